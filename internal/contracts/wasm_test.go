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

// moduleWith returns loopModule with its type section replaced by types,
// its handle body by body (locals included, ending in 0x0b), and a table
// section added when table is not nil.
func moduleWith(types, table, body []byte) []byte {
	sec := func(id byte, payload []byte) []byte {
		return append([]byte{id, byte(len(payload))}, payload...)
	}
	m := bytes.Clone(wasmHeader)
	m = append(m, sec(sectionType, types)...)
	m = append(m, sec(sectionFunc, []byte{0x01, 0x00})...)
	if table != nil {
		m = append(m, sec(sectionTable, table)...)
	}
	m = append(m, sec(sectionMemory, []byte{0x01, 0x00, 0x01})...)
	m = append(m, sec(sectionExport, []byte{0x02, 0x06, 'h', 'a', 'n', 'd', 'l', 'e', 0x00, 0x00, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00})...)
	code := append([]byte{0x01, byte(len(body))}, body...)
	return append(m, sec(sectionCode, code)...)
}

// TestInstrumentRefusesUnboundedTablesAndFloats: a table that table.grow
// could grow by billions of elements for one instruction's gas, and any
// floating point (NaN payloads differ between machines), are refused at
// upload; the same module without them is accepted.
func TestInstrumentRefusesUnboundedTablesAndFloats(t *testing.T) {
	i32Result := []byte{0x01, 0x60, 0x00, 0x01, 0x7F}
	returnZero := []byte{0x00, 0x41, 0x00, 0x0B}
	// table.grow 0 of 0x7ffffffe null refs; i32.const 0 would follow.
	grow := []byte{0x00, 0xD0, 0x70, 0x41, 0xFE, 0xFF, 0xFF, 0xFF, 0x07, 0xFC, 0x0F, 0x00, 0x0B}
	tests := []struct {
		name         string
		types, table []byte
		body         []byte
		refused      string // "" when accepted
	}{
		{"plain", i32Result, nil, returnZero, ""},
		{"bounded table grows", i32Result, []byte{0x01, 0x70, 0x01, 0x00, 0x10}, grow, ""},
		{"table without maximum", i32Result, []byte{0x01, 0x70, 0x00, 0x00}, grow, "maximum"},
		{"table maximum too large", i32Result, []byte{0x01, 0x70, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x07}, grow, "maximum"},
		{"f32.const", i32Result, nil, []byte{0x00, 0x43, 0, 0, 0xC0, 0x7F, 0xA8, 0x0B}, "floating point"},
		{"f64 result", []byte{0x01, 0x60, 0x00, 0x01, 0x7C}, nil, returnZero, "floating point"},
		{"f32 local", i32Result, nil, []byte{0x01, 0x01, 0x7D, 0x41, 0x00, 0x0B}, "floating point"},
		{"f64 block", i32Result, nil, []byte{0x00, 0x02, 0x7C, 0x00, 0x0B, 0x41, 0x00, 0x0B}, "floating point"},
		{"f32.load", i32Result, nil, []byte{0x00, 0x41, 0x00, 0x2A, 0x02, 0x00, 0xBC, 0x0B}, "floating point"},
		{"saturating truncation", i32Result, nil, []byte{0x00, 0x41, 0x00, 0xFC, 0x00, 0x0B}, "floating point"},
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := moduleWith(tt.types, tt.table, tt.body)
			_, _, err := Instrument(m)
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("Instrument: %v, want accepted", err)
				}
				compiled, err := rt.CompileModule(ctx, m)
				if err != nil {
					t.Fatalf("the accepted module is not valid: %v", err)
				}
				compiled.Close(ctx)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.refused) {
				t.Fatalf("Instrument: %v, want refused (%q)", err, tt.refused)
			}
		})
	}
}

// TestBoundedTableGrowFails: in a table with a small maximum, table.grow
// by 0x7ffffffe answers -1 instead of allocating.
func TestBoundedTableGrowFails(t *testing.T) {
	ctx := context.Background()
	rt, err := NewRuntime(ctx, Limits{Gas: 1000, MemoryPages: 2, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	grow := []byte{0x00, 0xD0, 0x70, 0x41, 0xFE, 0xFF, 0xFF, 0xFF, 0x07, 0xFC, 0x0F, 0x00, 0x1A, 0x41, 0x00, 0x0B}
	p, err := rt.Compile(ctx, moduleWith([]byte{0x01, 0x60, 0x00, 0x01, 0x7F}, []byte{0x01, 0x70, 0x01, 0x00, 0x10}, grow))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(ctx, map[string]any{}, MapState{}); err != nil {
		t.Fatal(err)
	}
}
