package rooms

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// pageBack pages a room's history backwards on e from the end, limit
// events at a time, until a page is empty, and returns the IDs read,
// newest first.
func pageBack(t *testing.T, e *Engine, roomID id.RoomID, limit int) []id.EventID {
	t.Helper()
	var out []id.EventID
	from := TopoEnd
	for range 1000 {
		evs, err := e.HistoryBefore(context.Background(), roomID, from, TopoStart, math.MaxInt64, limit)
		if err != nil {
			t.Fatalf("history before %v: %v", from, err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, ev := range evs {
			out = append(out, ev.ID)
		}
		from = PointOf(evs[len(evs)-1])
	}
	t.Fatal("paging back did not end")
	return nil
}

// timelineIDs returns the IDs of a server's timeline of the room in
// stream order, newest first.
func timelineIDs(t *testing.T, e *Engine, roomID id.RoomID) []id.EventID {
	t.Helper()
	evs, err := e.RoomEvents(context.Background(), roomID, math.MinInt64, math.MaxInt64, 100000, true)
	if err != nil {
		t.Fatalf("room events: %v", err)
	}
	var out []id.EventID
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// TestHistoryBackfilledAfterJoin: bob's server b joins a room with 150
// messages on a; paging back on b fetches the room's history from a and
// answers it in a's order down to the create event, each event once, the
// same way a second time without asking a again; /sync's stream order is
// untouched (the history is below every position); under
// history_visibility joined, bob sees none of it.
func TestHistoryBackfilledAfterJoin(t *testing.T) {
	for _, hv := range []string{"shared", "joined"} {
		t.Run(hv, func(t *testing.T) {
			n := newFedNet(t, "a", "b")
			ctx := context.Background()
			roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA,
				stateProto(aliceA, "m.room.history_visibility", "", fmt.Sprintf(`{"history_visibility":%q}`, hv)))
			for i := range 150 {
				n.send("a", roomID, textProto(aliceA, fmt.Sprintf("message %d", i)))
			}
			_, join := n.join("a", "b", roomID, bobB)
			streamBefore := timelineIDs(t, n.e("b"), roomID)

			got := pageBack(t, n.e("b"), roomID, 20)
			want := timelineIDs(t, n.e("a"), roomID)
			if !slices.Equal(got, want) {
				t.Fatalf("b's history (%d events) differs from a's timeline (%d events)", len(got), len(want))
			}
			asked := n.backfillAsked
			if asked == 0 || asked > 10 {
				t.Errorf("b asked a for backfill %d times, want 1 to 10", asked)
			}
			if again := pageBack(t, n.e("b"), roomID, 20); !slices.Equal(again, got) {
				t.Errorf("a second pass read %d events, the first %d", len(again), len(got))
			}
			if n.backfillAsked != asked {
				t.Errorf("a second pass asked a for backfill again")
			}
			stream, err := n.e("b").RoomEvents(ctx, roomID, 0, math.MaxInt64, 1000, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(stream) != len(streamBefore) {
				t.Errorf("b's stream of the room grew from %d to %d events: backfilled history would reach /sync", len(streamBefore), len(stream))
			}

			vis, err := n.e("b").Visibility(ctx, roomID, bobB)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := n.e("b").Events(ctx, got)
			if err != nil {
				t.Fatal(err)
			}
			var messages, visible int
			for _, ev := range evs {
				if ev.Type != "m.room.message" {
					continue
				}
				if !ev.Backfilled() {
					t.Errorf("message %s is not at a backfill position (%d)", ev.ID, ev.Pos)
				}
				messages++
				if vis.CanSee(ev) {
					visible++
				}
			}
			wantVisible := map[string]int{"shared": 150, "joined": 0}[hv]
			if messages != 150 || visible != wantVisible {
				t.Errorf("bob sees %d of %d messages before his join, want %d of 150", visible, messages, wantVisible)
			}
			if !vis.CanSee(join) {
				t.Errorf("bob does not see his own join")
			}
		})
	}
}

// TestGapBackfilled: while b is away (a's events not delivered), a's room
// moves on by 40 messages; the next one delivered to b leaves a gap that
// get_missing_events only partly fills. The event after the gap is marked
// for /sync, and paging back on b fills the gap from a, each event in its
// place between what b had before and after.
func TestGapBackfilled(t *testing.T) {
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV10, aliceA)
	n.join("a", "b", roomID, bobB)
	n.deliver("b", n.send("b", roomID, textProto(bobB, "before the gap")), "a")
	for i := range 40 {
		n.send("a", roomID, textProto(aliceA, fmt.Sprintf("missed %d", i)))
	}
	n.deliver("a", n.send("a", roomID, textProto(aliceA, "after the gap")), "b")
	evs, err := n.e("b").RoomEvents(context.Background(), roomID, 0, math.MaxInt64, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	gaps := 0
	for _, ev := range evs {
		if ev.Gap {
			gaps++
		}
	}
	if gaps != 1 {
		t.Errorf("%d events of b's timeline are marked as following a gap, want 1", gaps)
	}

	got := pageBack(t, n.e("b"), roomID, 15)
	want := timelineIDs(t, n.e("a"), roomID)
	if !slices.Equal(got, want) {
		t.Fatalf("b's history (%d events) differs from a's timeline (%d events)", len(got), len(want))
	}
}

// TestHistoryBeforePosAfterPartition follows Complement's
// TestNetworkPartitionOrdering: b's message 1' reaches a only after alice
// sent 1 to 4 on a, so a stores it after them though it comes before 2, 3
// and 4 in topological order. A page back from the stream position before
// 1' (a /sync prev_batch whose timeline starts at 1') holds 4, 3, 2, 1:
// the events stored before it, in topological order, not those that come
// before 1' topologically; the next page goes on from 1 without 1'.
func TestHistoryBeforePosAfterPartition(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "b")
	roomID := createFedRoom(t, n.e("a"), id.RoomV11, aliceA)
	n.join("a", "b", roomID, bobB)
	late := n.send("b", roomID, textProto(bobB, "1'"))
	var sent []id.EventID
	for i := 1; i <= 4; i++ {
		sent = append(sent, n.send("a", roomID, textProto(aliceA, fmt.Sprint(i))).ID)
	}
	n.deliver("b", late, "a")
	for i := 5; i <= 7; i++ {
		n.send("a", roomID, textProto(aliceA, fmt.Sprint(i)))
	}
	stored, err := n.e("a").Event(ctx, late.ID)
	if err != nil {
		t.Fatalf("a lacks 1': %v", err)
	}
	page, err := n.e("a").HistoryBeforePos(ctx, roomID, stored.Pos-1, TopoStart, math.MaxInt64, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(sent)
	slices.Reverse(want)
	if got := eventIDs(page); !slices.Equal(got, want) {
		t.Fatalf("page back from before 1' = %v, want 4, 3, 2, 1 = %v", got, want)
	}
	next, err := n.e("a").HistoryBefore(ctx, roomID, PointOf(page[len(page)-1]), TopoStart, math.MaxInt64, 100)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(eventIDs(next), late.ID) || len(next) == 0 {
		t.Errorf("the next page (%d events) holds 1' or nothing", len(next))
	}
}
