package rooms

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// queryPlan returns SQLite's plan for q, one line per step.
func queryPlan(t *testing.T, env *testEnv, q string, args ...any) string {
	t.Helper()
	rows, err := env.db.Query(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestHistoryQueriesUseIndexes checks that the queries behind history
// visibility and state at a position read index ranges keyed by what they
// look for, never the room's whole history: their cost must not grow with
// the number of messages (BenchmarkHistoryVisibility measures it).
func TestHistoryQueriesUseIndexes(t *testing.T) {
	env := newTestEnv(t)
	roomID, _ := createTestRoom(t, env.e, "10")
	tests := []struct {
		name, query string
		args        []any
		index       string
	}{
		{"visibility", visibilityQuery, []any{roomID, bob}, "events_room_state"},
		{"snapshot at position", snapshotAtPosQuery, []any{roomID, int64(100)}, "state_snapshots_room"},
		{"topological page", "SELECT " + eventColumns + " FROM events " + topoWhere + " ORDER BY depth DESC, pos DESC LIMIT $7",
			[]any{roomID, int64(0), int64(0), int64(50), int64(70), int64(1000), 10}, "events_room_topo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := queryPlan(t, env, tt.query, tt.args...)
			if !strings.Contains(plan, "USING INDEX "+tt.index) && !strings.Contains(plan, "USING COVERING INDEX "+tt.index) {
				t.Errorf("plan does not use %s:\n%s", tt.index, plan)
			}
			for _, line := range strings.Split(plan, "\n") {
				if strings.HasPrefix(line, "SCAN ") && !strings.Contains(line, "INDEX") {
					t.Errorf("plan scans a table:\n%s", plan)
				}
			}
		})
	}
}

// TestSnapshotAtPos checks that the state snapshot at each position of a
// room is the one of its last state event at or before that position.
func TestSnapshotAtPos(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	roomID, created := createTestRoom(t, env.e, "10")
	other, _ := createTestRoom(t, env.e, "10") // interleaves positions of another room
	bobJoin, err := env.e.StateEvent(ctx, roomID, "m.room.member", string(bob))
	if err != nil || bobJoin == nil {
		t.Fatalf("bob's join: %v", err)
	}
	evs := append(created, bobJoin)
	for i, p := range []Proto{
		textProto(alice, "one"), stateProto(alice, "m.room.topic", "", `{"topic":"a"}`), textProto(bob, "two"),
		textProto(alice, "three"), stateProto(alice, "m.room.name", "", `{"name":"b"}`), textProto(bob, "four"),
	} {
		ev, err := env.e.Send(ctx, roomID, p)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		evs = append(evs, ev)
		if _, err := env.e.Send(ctx, other, stateProto(alice, "m.room.topic", "", `{"topic":"elsewhere"}`)); err != nil {
			t.Fatalf("send to the other room: %v", err)
		}
	}
	last := env.e.LastPos(ctx, roomID)
	for pos := int64(0); pos <= last+1; pos++ {
		var want int64
		for _, ev := range evs {
			if ev.IsState() && ev.Pos <= pos {
				want = max(want, ev.Pos)
			}
		}
		got, err := env.e.SnapshotAtPos(ctx, roomID, pos)
		if err != nil {
			t.Fatalf("SnapshotAtPos(%d): %v", pos, err)
		}
		if got != want {
			t.Errorf("SnapshotAtPos(%d) = %d, want %d", pos, got, want)
		}
	}
	if got, err := env.e.SnapshotAtPos(ctx, id.RoomID("!unknown:test"), last); err != nil || got != 0 {
		t.Errorf("unknown room: %d, %v; want 0", got, err)
	}
}
