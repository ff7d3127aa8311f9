package contracts

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// A hand-assembled module: memory, and handle () -> i32 looping forever
// (loop br 0 end, i32.const 0).
var loopModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
	0x03, 0x02, 0x01, 0x00, // func 0: type 0
	0x05, 0x03, 0x01, 0x00, 0x01, // memory min 1
	0x07, 0x13, 0x02, 0x06, 'h', 'a', 'n', 'd', 'l', 'e', 0x00, 0x00, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x0a, 0x0b, 0x01, 0x09, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x41, 0x00, 0x0b,
}

func TestInstrumentMetersLoops(t *testing.T) {
	ctx := context.Background()
	rt, err := NewRuntime(ctx, Limits{Gas: 1000, MemoryPages: 2, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	p, err := rt.Compile(ctx, loopModule)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(ctx, map[string]any{}, MapState{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Err != ErrOutOfGas {
		t.Fatalf("err %v, want out of gas", out.Err)
	}
}

// TestInstrumentRefusesGasAccess: code that names the global the
// instrumenter adds (global.set 0 in a module without globals) is refused
// instead of resetting its own gas.
func TestInstrumentRefusesGasAccess(t *testing.T) {
	m := bytes.Clone(loopModule)
	// Replace the body (loop br 0 end; i32.const 0) with
	// i64.const 9 global.set 0 i32.const 0 padded with nops.
	body := []byte{0x42, 0x09, 0x24, 0x00, 0x41, 0x00, 0x0b}
	i := bytes.LastIndex(m, []byte{0x03, 0x40, 0x0c, 0x00, 0x0b, 0x41, 0x00, 0x0b})
	copy(m[i:], append([]byte{0x01}, body...))
	if _, _, err := Instrument(m); err == nil || !strings.Contains(err.Error(), "global index") {
		t.Fatalf("Instrument: %v, want the global refused", err)
	}
}

func TestInstrumentRefusesStartFunctions(t *testing.T) {
	m := bytes.Clone(loopModule)
	// A start section (8) naming function 0, after the export section.
	i := bytes.Index(m, []byte{0x0a, 0x0b})
	m = append(m[:i:i], append([]byte{0x08, 0x01, 0x00}, m[i:]...)...)
	if _, _, err := Instrument(m); err == nil || !strings.Contains(err.Error(), "start function") {
		t.Fatalf("Instrument: %v, want the start function refused", err)
	}
}

// FuzzInstrument: malformed modules give an error, never a panic, and
// whatever Instrument accepts and wazero validates still compiles once
// instrumented.
func FuzzInstrument(f *testing.F) {
	f.Add(loopModule)
	f.Add([]byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00})
	f.Add(loopModule[:len(loopModule)-3])
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x0a\x05\x01\x03\x00\x02\x40"))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, _, err := Instrument(wasm)
		if err != nil {
			return
		}
		orig, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		orig.Close(ctx)
		m, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("a valid module no longer compiles once instrumented: %v", err)
		}
		m.Close(ctx)
	})
}
