package federation

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
)

// TestDecodeStatePDUsStreams: a /state answer of 200,000 events, written
// as it is read, is handed over one PDU at a time, in order, each event
// of the auth chain flagged, while the live heap stays far below the
// answer's size.
func TestDecodeStatePDUsStreams(t *testing.T) {
	const n = 200_000
	pr, pw := io.Pipe()
	written := make(chan int64, 1)
	go func() {
		var size int64
		write := func(s string) {
			k, _ := io.WriteString(pw, s)
			size += int64(k)
		}
		write(`{"origin": "example.org", "pdus": [`)
		for i := range n {
			if i > 0 {
				write(",")
			}
			write(fmt.Sprintf(`{"type":"m.room.member","state_key":"@u%d:example.org","content":{"membership":"join","displayname":"%s"}}`, i, strings.Repeat("x", 200)))
		}
		write(`], "unknown": {"nested": [1, 2, {"a": "b"}]}, "auth_chain": [`)
		for i := range 3 {
			if i > 0 {
				write(",")
			}
			write(fmt.Sprintf(`{"type":"m.room.create","n":%d}`, i))
		}
		write("]}")
		written <- size
		pw.Close()
	}()
	runtime.GC()
	base := liveHeap()
	var peak uint64
	state, chain := 0, 0
	err := decodeStatePDUs(pr, MaxStateResponseBytes, func(authChain bool, raw json.RawMessage) error {
		var ev struct {
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
			N        int    `json:"n"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return err
		}
		switch {
		case authChain:
			if ev.Type != "m.room.create" || ev.N != chain {
				return fmt.Errorf("auth chain event %d is %s %d", chain, ev.Type, ev.N)
			}
			chain++
		default:
			if want := fmt.Sprintf("@u%d:example.org", state); ev.StateKey != want {
				return fmt.Errorf("state event %d is %q, want %q", state, ev.StateKey, want)
			}
			state++
		}
		if state%10_000 == 0 {
			peak = max(peak, liveHeap())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	size := <-written
	if state != n || chain != 3 {
		t.Fatalf("decoded %d state events and %d of the auth chain, want %d and 3", state, chain, n)
	}
	if grew := int64(peak) - int64(base); grew > size/20 {
		t.Errorf("the live heap grew %d KiB while decoding a %d KiB answer, want under a twentieth of it", grew>>10, size>>10)
	}
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestDecodeStatePDUsRefuses: answers that are not a /state answer, or
// exceed the limits, fail with an error that says so.
func TestDecodeStatePDUsRefuses(t *testing.T) {
	big := `{"pdus": [{"content": "` + strings.Repeat("x", maxStreamedEventBytes+2*readAhead) + `"}]}`
	for _, tc := range []struct {
		name, body string
		max        int64
		want       string
	}{
		{"not an object", `[1, 2]`, 1 << 20, "want a JSON {"},
		{"pdus not an array", `{"pdus": {"a": 1}}`, 1 << 20, "want a JSON ["},
		{"a PDU not an object", `{"pdus": ["x"]}`, 1 << 20, "not an object"},
		{"cut short", `{"pdus": [{"a": 1}`, 1 << 20, "EOF"},
		{"an event too large", big, 1 << 30, "an event of the answer exceeds"},
		{"the answer too large", `{"pdus": [{"a": 1}, {"b": 2}, {"c": 3}]}`, 20, "exceeds the size allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeStatePDUs(strings.NewReader(tc.body), tc.max, func(bool, json.RawMessage) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v, want an error with %q", err, tc.want)
			}
		})
	}
	stop := errors.New("stop")
	err := decodeStatePDUs(strings.NewReader(`{"pdus": [{"a": 1}]}`), 1<<20, func(bool, json.RawMessage) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("decode: %v, want the handler's error", err)
	}
}
