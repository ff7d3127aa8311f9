package rooms

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/stateres"
)

func TestEventCache(t *testing.T) {
	c := newEventCache(4)
	if c.get("$missing") != nil {
		t.Error("get of an unknown event returned an event")
	}
	evs := make([]*Event, 4)
	for i := range evs {
		evs[i] = &Event{ID: id.EventID(fmt.Sprintf("$%d", i))}
		c.put(evs[i])
	}
	for _, ev := range evs {
		if got := c.get(ev.ID); got != ev {
			t.Errorf("get(%s) = %v, want the event put", ev.ID, got)
		}
	}
	// Putting again replaces.
	repl := &Event{ID: "$0", Type: "replaced"}
	c.put(repl)
	if got := c.get("$0"); got != repl {
		t.Errorf("get after a second put = %v, want the replacement", got)
	}
	c.drop("$1")
	if c.get("$1") != nil {
		t.Error("dropped event still cached")
	}
	c.drop("$never") // dropping an unknown event is a no-op
}

func TestEventCacheBound(t *testing.T) {
	for _, max := range []int{1, 2, 5, 64} {
		t.Run(fmt.Sprint("max=", max), func(t *testing.T) {
			c := newEventCache(max)
			for i := range 10 * max {
				ev := &Event{ID: id.EventID(fmt.Sprintf("$%d", i))}
				c.put(ev)
				if n := len(c.m); n > max {
					t.Fatalf("after %d puts the cache holds %d events, max %d", i+1, n, max)
				}
				if c.get(ev.ID) != ev {
					t.Fatalf("the newest event %s was evicted", ev.ID)
				}
			}
			if max > 1 && len(c.m) < max/2 {
				t.Errorf("cache holds %d events, evicted more than half of %d", len(c.m), max)
			}
		})
	}
}

func TestEventCacheConcurrent(t *testing.T) {
	c := newEventCache(16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				evID := id.EventID(fmt.Sprintf("$%d-%d", g, i))
				c.put(&Event{ID: evID})
				c.get(evID)
				if i%3 == 0 {
					c.drop(evID)
				}
			}
		})
	}
	wg.Wait()
	if n := len(c.m); n > 16 {
		t.Errorf("cache holds %d events, max 16", n)
	}
}

// snapState returns a snapshot whose state has n entries.
func snapState(n int) *resolvedSnapshot {
	st := make(map[stateKey]id.EventID, n)
	for i := range n {
		st[stateKey{"m.room.member", fmt.Sprintf("@u%d:test", i)}] = id.EventID(fmt.Sprintf("$%d", i))
	}
	return &resolvedSnapshot{state: st, chainLen: 3}
}

func TestSnapshotCache(t *testing.T) {
	var c snapshotCache // the zero value is ready to use
	if _, ok := c.get(1); ok {
		t.Error("get on an empty cache found a snapshot")
	}
	s1, s2 := snapState(3), snapState(5)
	c.put(1, s1)
	c.put(2, s2)
	tests := []struct {
		snap int64
		want *resolvedSnapshot
	}{
		{1, s1},
		{2, s2},
		{3, nil},
	}
	for _, tt := range tests {
		got, ok := c.get(tt.snap)
		if ok != (tt.want != nil) || got != tt.want {
			t.Errorf("get(%d) = %v, %v; want %v", tt.snap, got, ok, tt.want)
		}
	}
	if c.entries != 8 {
		t.Errorf("entries = %d, want 8", c.entries)
	}
	// A second put of a snapshot keeps the first (they never change) and
	// does not count its entries twice.
	c.put(1, snapState(3))
	if got, _ := c.get(1); got != s1 {
		t.Error("second put replaced a cached snapshot")
	}
	if c.entries != 8 {
		t.Errorf("entries after a repeated put = %d, want 8", c.entries)
	}
}

func TestSnapshotCacheBound(t *testing.T) {
	// Snapshots share one big state map: only its size matters.
	half := snapState(maxSnapshotEntries / 2)
	quarter := &resolvedSnapshot{state: snapState(maxSnapshotEntries / 4).state}
	tests := []struct {
		name    string
		puts    []*resolvedSnapshot
		present []bool // after all puts, per snapshot
	}{
		{"fits exactly", []*resolvedSnapshot{half, half}, []bool{true, true}},
		{"overflow starts over", []*resolvedSnapshot{half, half, quarter}, []bool{false, false, true}},
		{"small ones fit beside", []*resolvedSnapshot{half, quarter, quarter}, []bool{true, true, true}},
		{"oversized snapshot is still cached", []*resolvedSnapshot{quarter, {state: snapState(maxSnapshotEntries + 1).state}}, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c snapshotCache
			for i, st := range tt.puts {
				c.put(int64(i+1), st)
			}
			for i, want := range tt.present {
				if _, ok := c.get(int64(i + 1)); ok != want {
					t.Errorf("snapshot %d cached = %v, want %v", i+1, ok, want)
				}
			}
			total := 0
			for _, st := range c.m {
				total += len(st.state)
			}
			if total != c.entries {
				t.Errorf("entries = %d, but the cached snapshots hold %d", c.entries, total)
			}
		})
	}
}

// TestAuthGraphsBounded fills the auth graphs of two rooms past
// maxAuthGraphEvents together: asking for a third room's graph drops the
// least recently used, and the graph of a room asked for again is the one
// it had.
func TestAuthGraphsBounded(t *testing.T) {
	ctx := context.Background()
	var c authGraphs
	fill := func(roomID id.RoomID, n int) {
		t.Helper()
		events := stateres.EventMap{}
		prev := []id.EventID{}
		var last id.EventID
		for i := range n {
			last = id.EventID(fmt.Sprintf("$%s-%d", roomID, i))
			events[last] = &pdu.PDU{AuthEvents: prev}
			prev = []id.EventID{last}
		}
		chain, err := c.of(roomID).Index(events).AuthChain(ctx, []id.EventID{last})
		if err != nil || len(chain) != n-1 {
			t.Fatalf("auth chain in %s: %d events, %v; want %d", roomID, len(chain), err, n-1)
		}
	}
	half := maxAuthGraphEvents/2 + 1
	fill("!one", half)
	fill("!two", half)
	two := c.of("!two")
	c.of("!three")
	if _, ok := c.graphs["!one"]; ok {
		t.Errorf("the least recently used graph was kept with %d events in all", 2*half)
	}
	if c.of("!two") != two || two.Len() != half {
		t.Errorf("the graph of the room used last was dropped or emptied")
	}
	c.drop("!two")
	if _, ok := c.graphs["!two"]; ok {
		t.Errorf("drop kept the room's graph")
	}
}
