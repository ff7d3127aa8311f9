package rooms

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestCommittedEvents reads the committed events after a position with
// filters and limits, from memory (the engine that committed them) and
// from the database (a fresh engine over the same database), across a
// rejected event, which followers never see: it lives beside the
// timeline.
func TestCommittedEvents(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	a := n.e("a")
	roomID := createFedRoom(t, a, id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	other := createFedRoom(t, a, id.RoomV11, aliceA)
	start := a.db.Visible()

	first := n.send("a", roomID, textProto(aliceA, "first"))
	sentByB := n.send("b", roomID, textProto(bobB, "from b"))
	n.deliver("b", sentByB, "a")
	fromB, err := a.Event(ctx, sentByB.ID) // at a's position
	if err != nil {
		t.Fatal(err)
	}
	refused := n.e("b").signedRaw(t, roomID, textProto("@carol:b", "not joined"), sentByB)
	rejectedID, err := a.ReceivePDU(ctx, "b", refused)
	if errCode(err) != "M_FORBIDDEN" {
		t.Fatalf("event of a user who never joined: %v, want M_FORBIDDEN", err)
	}
	topic := n.send("a", roomID, stateProto(aliceA, "m.room.topic", "", `{"topic":"t"}`))
	elsewhere := n.send("a", other, textProto(aliceA, "elsewhere"))
	last := n.send("a", roomID, textProto(aliceA, "last"))
	end := a.db.Visible()
	if end < last.Pos {
		t.Fatalf("committed position %d is below the last event's %d", end, last.Pos)
	}

	inRoom := func(r id.RoomID) func(id.RoomID) bool { return func(x id.RoomID) bool { return x == r } }
	ids := func(evs ...*Event) []id.EventID { return eventIDs(evs) }
	msgs := []string{"m.room.message"}
	cases := []struct {
		name        string
		after       int64
		filter      EventFilter
		limit       int
		want        []id.EventID
		wantThrough int64
	}{
		{"every event", start, EventFilter{}, 100, ids(first, fromB, topic, elsewhere, last), end},
		{"limit", start, EventFilter{}, 2, ids(first, fromB), fromB.Pos},
		{"after a position", fromB.Pos, EventFilter{}, 100, ids(topic, elsewhere, last), end},
		{"types", start, EventFilter{Types: msgs}, 100, ids(first, fromB, elsewhere, last), end},
		{"types and limit", fromB.Pos, EventFilter{Types: msgs}, 1, ids(elsewhere), elsewhere.Pos},
		{"rooms", start, EventFilter{Rooms: inRoom(other)}, 100, ids(elsewhere), end},
		{"types or rooms", start, EventFilter{Types: []string{"m.room.topic"}, Rooms: inRoom(other)}, 100, ids(topic, elsewhere), end},
		{"nothing picked", start, EventFilter{Types: []string{"x.none"}}, 100, nil, end},
		{"no types at all", start, EventFilter{Types: []string{}}, 100, nil, end},
		{"nothing after the end", end, EventFilter{}, 100, nil, end},
		{"upTo past the committed position", start, EventFilter{Types: msgs}, 100, ids(first, fromB, elsewhere, last), end},
	}
	fresh := New(a.db, a.log, a.signer)
	for _, source := range []struct {
		name string
		e    *Engine
	}{{"memory", a}, {"database", fresh}} {
		for _, c := range cases {
			t.Run(source.name+"/"+c.name, func(t *testing.T) {
				upTo := end
				if c.name == "upTo past the committed position" {
					upTo = math.MaxInt64
				}
				evs, through, err := source.e.CommittedEvents(ctx, c.after, upTo, c.filter, c.limit)
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(evs...); !slices.Equal(got, c.want) {
					t.Errorf("events = %v, want %v", got, c.want)
				}
				if slices.Contains(ids(evs...), rejectedID) {
					t.Errorf("the rejected event %s was read", rejectedID)
				}
				if through != c.wantThrough {
					t.Errorf("through = %d, want %d", through, c.wantThrough)
				}
			})
		}
	}
	if _, _, ok := fresh.committed.get(start, end, EventFilter{}, 100); ok {
		t.Error("a fresh engine answered from memory for events it never saw commit")
	}
}

// TestCommittedEventsRing: the ring of newest events answers only above
// the position of the newest event it dropped, wraps in order, and forgets
// a purged room's events.
func TestCommittedEventsRing(t *testing.T) {
	c := newCommittedEvents()
	if _, _, ok := c.get(0, 10, EventFilter{}, 10); ok {
		t.Fatal("an empty ring answered")
	}
	total := committedSize + 10
	for i := 1; i <= total; i++ {
		room := id.RoomID("!even:t")
		if i%2 == 1 {
			room = "!odd:t"
		}
		// Positions 10, 20, ...: other streams use the ones between.
		c.add(&Event{Pos: int64(i * 10), RoomID: room, ID: id.EventID(fmt.Sprintf("$%d", i))})
	}
	floor := int64(10 * 10) // the newest of the 10 events dropped
	for _, tc := range []struct {
		after  int64
		ok     bool
		first  int64
		length int
	}{
		{after: floor - 1, ok: false},
		{after: floor, ok: true, first: floor + 10, length: committedSize},
		{after: floor + 5, ok: true, first: floor + 10, length: committedSize},
		{after: int64(total * 10), ok: true, length: 0},
	} {
		evs, through, ok := c.get(tc.after, int64(total*10), EventFilter{}, 2*committedSize)
		if ok != tc.ok {
			t.Fatalf("after %d: ok = %v, want %v", tc.after, ok, tc.ok)
		}
		if !ok {
			continue
		}
		if len(evs) != tc.length || through != int64(total*10) {
			t.Fatalf("after %d: %d events through %d, want %d through %d", tc.after, len(evs), through, tc.length, total*10)
		}
		if tc.length > 0 && evs[0].Pos != tc.first {
			t.Errorf("after %d: first event at %d, want %d", tc.after, evs[0].Pos, tc.first)
		}
		if !slices.IsSortedFunc(evs, func(a, b *Event) int { return int(a.Pos - b.Pos) }) {
			t.Errorf("after %d: events out of order", tc.after)
		}
	}
	c.dropRoom("!odd:t")
	evs, _, ok := c.get(floor, int64(total*10), EventFilter{}, 2*committedSize)
	if !ok || len(evs) != committedSize/2 {
		t.Fatalf("after dropping a room: %d events (ok %v), want %d", len(evs), ok, committedSize/2)
	}
	for _, ev := range evs {
		if ev.RoomID == "!odd:t" {
			t.Fatalf("the dropped room's event %s is still read", ev.ID)
		}
	}
	c.add(&Event{Pos: int64(total*10 + 10), RoomID: "!even:t", ID: "$next"})
	evs, _, _ = c.get(int64(total*10), math.MaxInt64, EventFilter{}, 10)
	if len(evs) != 1 || evs[0].ID != "$next" {
		t.Errorf("the event added after the drop: %v", eventIDs(evs))
	}
}
