package contracts_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/contracts"
)

func newRuntime(t testing.TB, limits contracts.Limits) *contracts.Runtime {
	t.Helper()
	rt, err := contracts.NewRuntime(context.Background(), limits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func compile(t testing.TB, rt *contracts.Runtime, src string) *contracts.Program {
	t.Helper()
	p, err := rt.Compile(context.Background(), buildContract(t, src))
	if err != nil {
		t.Fatalf("compile %s: %v", src, err)
	}
	return p
}

func vote(sender, option string) map[string]any {
	return map[string]any{"type": "org.matrixos.poll.vote", "sender": sender, "event_id": "$" + sender + option,
		"content": map[string]any{"option": option}}
}

func TestRunawayContractsAreStopped(t *testing.T) {
	limits := contracts.Limits{Gas: 2_000_000, MemoryPages: 8, Timeout: time.Minute}
	rt := newRuntime(t, limits)
	tests := []struct {
		src  string
		want func(*contracts.Outcome) bool
		what string
	}{
		{"testdata/loop.c", func(o *contracts.Outcome) bool { return errors.Is(o.Err, contracts.ErrOutOfGas) }, "out of gas"},
		{"testdata/recurse.c", func(o *contracts.Outcome) bool { return o.Err != nil }, "an error"},
		{"testdata/alloc.c", func(o *contracts.Outcome) bool {
			return o.Err != nil && strings.Contains(o.Err.Error(), "out of bounds") && o.MemoryPages == limits.MemoryPages
		}, "an out of bounds access with the memory at its limit"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p := compile(t, rt, tt.src)
			start := time.Now()
			out, err := p.Run(context.Background(), vote("@a:x", "yes"), contracts.MapState{})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(out) {
				t.Fatalf("outcome %+v (err %v), want %s", out, out.Err, tt.what)
			}
			if out.Result != nil || len(out.Writes) != 0 {
				t.Errorf("a failed call kept its result %v or writes %v", out.Result, out.Writes)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("stopped after %s", d)
			}
		})
	}
}

// TestDeadlineStopsACall checks that the wall clock stops a call and that
// the stop is Run's error, not an outcome: it depends on the machine.
func TestDeadlineStopsACall(t *testing.T) {
	rt := newRuntime(t, contracts.Limits{Gas: 1 << 62, MemoryPages: 8, Timeout: 200 * time.Millisecond})
	p := compile(t, rt, "testdata/loop.c")
	out, err := p.Run(context.Background(), vote("@a:x", "yes"), contracts.MapState{})
	if !errors.Is(err, contracts.ErrTimedOut) || out != nil {
		t.Fatalf("run: outcome %+v, err %v; want no outcome and ErrTimedOut (a wall-clock stop is not done)", out, err)
	}
}

func TestForbiddenImportsAreRefused(t *testing.T) {
	rt := newRuntime(t, contracts.DefaultLimits)
	for _, src := range []string{"testdata/clock.c", "testdata/fd.c", "testdata/random.c"} {
		t.Run(src, func(t *testing.T) {
			_, err := rt.Compile(context.Background(), buildContract(t, src))
			if err == nil || !strings.Contains(err.Error(), "import") {
				t.Fatalf("compile: %v, want the import refused", err)
			}
		})
	}
}

// TestSameInputsSameOutcome runs the poll twice from empty state over the
// same votes and compares every result and the final state.
func TestSameInputsSameOutcome(t *testing.T) {
	rt := newRuntime(t, contracts.DefaultLimits)
	p := compile(t, rt, "examples/poll.c")
	inputs := []map[string]any{vote("@a:x", "yes"), vote("@b:x", "no"), vote("@c:x", "yes"), vote("@a:x", "no"), vote("@b:x", "no")}
	run := func() ([]string, contracts.MapState) {
		state := contracts.MapState{}
		var results []string
		for _, in := range inputs {
			out, err := p.Run(context.Background(), in, state)
			if err != nil || out.Err != nil {
				t.Fatalf("run: %v %v", err, out.Err)
			}
			state.Apply(out.Writes)
			results = append(results, contracts.CanonicalResult(out.Result))
		}
		return results, state
	}
	r1, s1 := run()
	r2, s2 := run()
	if strings.Join(r1, "\n") != strings.Join(r2, "\n") {
		t.Fatalf("results differ:\n%v\n%v", r1, r2)
	}
	if len(s1) != len(s2) {
		t.Fatalf("states differ: %v %v", s1, s2)
	}
	for k, v := range s1 {
		if string(s2[k]) != string(v) {
			t.Fatalf("state %s: %q then %q", k, v, s2[k])
		}
	}
	want := []string{
		`{"option":"yes","voter":"@a:x","voters":1,"votes":1}`,
		`{"option":"no","voter":"@b:x","voters":2,"votes":1}`,
		`{"option":"yes","voter":"@c:x","voters":3,"votes":2}`,
		`{"changed_from":"yes","option":"no","voter":"@a:x","voters":3,"votes":2}`,
		`{"error":"already voted for this option"}`,
	}
	if strings.Join(r1, "\n") != strings.Join(want, "\n") {
		t.Fatalf("results:\n%s\nwant:\n%s", strings.Join(r1, "\n"), strings.Join(want, "\n"))
	}
}

// brokenState is a State whose reads fail, as a database gone away.
type brokenState struct{}

var errBrokenState = errors.New("database gone")

func (brokenState) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, errBrokenState
}

// TestStateReadFailureIsNotAnOutcome checks that a failed state read is
// Run's error (the call is made again), not a failure of the contract
// published as its result.
func TestStateReadFailureIsNotAnOutcome(t *testing.T) {
	rt := newRuntime(t, contracts.DefaultLimits)
	p := compile(t, rt, "examples/poll.c")
	out, err := p.Run(context.Background(), vote("@a:x", "yes"), brokenState{})
	if !errors.Is(err, errBrokenState) {
		t.Fatalf("run: outcome %+v, err %v; want the state read's error", out, err)
	}
}

// TestResultSizeIsBounded checks that a call whose result's JSON would
// pass the bound is stopped: three fields of 12 KiB are over 32 KiB of
// JSON.
func TestResultSizeIsBounded(t *testing.T) {
	rt := newRuntime(t, contracts.DefaultLimits)
	p := compile(t, rt, "testdata/bigresult.c")
	out, err := p.Run(context.Background(), vote("@a:x", "yes"), contracts.MapState{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Err == nil || !strings.Contains(out.Err.Error(), "result longer than") || out.Result != nil {
		t.Fatalf("outcome %+v, want the call stopped for its result's size", out)
	}
}

// TestBulkMemoryPaysForLength checks that memory.fill costs its length
// (1 gas per 64 bytes), not one instruction: a hundred fills of a
// megabyte use at least 100 * 2^20/64 gas.
func TestBulkMemoryPaysForLength(t *testing.T) {
	rt := newRuntime(t, contracts.DefaultLimits)
	p := compile(t, rt, "testdata/bulk.c")
	out, err := p.Run(context.Background(), vote("@a:x", "yes"), contracts.MapState{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Err != nil {
		t.Fatalf("call failed: %v", out.Err)
	}
	if want := int64(100 * (1 << 20) / 64); out.GasUsed < want {
		t.Fatalf("used %d gas, want at least %d", out.GasUsed, want)
	}
}
