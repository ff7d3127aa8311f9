package sync_test

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"testing"
)

// TestSlidingIncrementalFollowsChange checks that an incremental sliding
// sync response after one new message in one room does not redo the work
// of every room of the user's list: the allocations of the response for
// a user in 400 rooms are within a fixed margin of those for a user in 20
// rooms. Each room used to cost four or more (its combined config, its
// window entries, a copy of its sent record moved on each time, its is_dm
// flag on the heap): 1,564 more for the 380 more rooms.
func TestSlidingIncrementalFollowsChange(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 420 rooms")
	}
	small := incrementalAllocs(t, 20)
	large := incrementalAllocs(t, 400)
	t.Logf("allocations of an incremental response: %.0f (20 rooms), %.0f (400 rooms)", small, large)
	if small < 50 {
		t.Fatalf("%.0f allocations for a response: the measure measures nothing", small)
	}
	if large-small > 40 {
		t.Errorf("an incremental response allocates %.0f times for 400 rooms against %.0f for 20: its work grows with the rooms", large, small)
	}
}

// incrementalAllocs returns the allocations of an incremental room-list
// response (a retry of the same pos) that finds one new message in one of
// the user's nRooms rooms.
func incrementalAllocs(t *testing.T, nRooms int) float64 {
	t.Helper()
	f := newEngineFixture(t, nRooms, 1)
	body := roomListRequest(nRooms - 1)
	body["conn_id"] = "room-list"
	pos := f.slidingSync(t, body, "")
	f.send(t, f.rooms[nRooms/2], 1)
	// The response (also warming the caches the first one filled) sends
	// the room with the message, and no other.
	var resp slidingResponse
	if err := json.Unmarshal(f.slidingSyncBody(t, body, pos), &resp); err != nil {
		t.Fatal(err)
	}
	changed := f.rooms[nRooms/2]
	if r := resp.Rooms[changed]; len(resp.Rooms) != 1 || r == nil || len(r.Timeline) != 1 {
		t.Fatalf("incremental response: rooms %v, want only %s with the new message", slices.Collect(maps.Keys(resp.Rooms)), changed)
	}
	// AllocsPerRun counts every allocation of the process, the engine's
	// background goroutines' too: the least of a few measures is the
	// response's own, whatever else ran meanwhile (one failure under a
	// loaded CI-like machine came from that).
	least := math.Inf(1)
	for range 3 {
		least = min(least, testing.AllocsPerRun(5, func() { f.slidingSync(t, body, pos) }))
	}
	return least
}
