package rooms

import (
	"context"
	"strings"
	"testing"
)

// TestRelationIndexesArePartial: a plain message (no relation, no thread,
// no state key) adds no entry to the relation, thread and state indexes,
// which hold only the events that have one, and the lookups still use
// them.
func TestRelationIndexesArePartial(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	rows, err := env.db.Query(ctx, "SELECT name, partial FROM pragma_index_list('events')")
	if err != nil {
		t.Fatal(err)
	}
	partial := map[string]bool{}
	for rows.Next() {
		var name string
		var p bool
		if err := rows.Scan(&name, &p); err != nil {
			t.Fatal(err)
		}
		partial[name] = p
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, name := range []string{"events_relates", "events_relates_pos", "events_room_thread", "events_room_state"} {
		p, ok := partial[name]
		if !ok {
			t.Errorf("index %s missing (indexes: %v)", name, partial)
		} else if !p {
			t.Errorf("index %s holds every event, want only those with a relation, thread or state key", name)
		}
	}

	plans := map[string]string{
		"SELECT event_id FROM events WHERE relates_to = 'x' AND room_id = 'r' AND redacted_by IS NULL":                         "events_relates",
		"SELECT DISTINCT relates_to FROM events WHERE relates_to IN ('a', 'b')":                                                "events_relates",
		"SELECT pos FROM events WHERE rel_type = 'm.thread' AND relates_to IN ('a', 'b') AND redacted_by IS NULL AND pos <= 5": "events_relates",
		// each part of it (history visibility, a member, the create event)
		visibilityQuery: "events_room_state",
	}
	for q, index := range plans {
		plan := queryPlan(t, env, q)
		if !strings.Contains(plan, index) {
			t.Errorf("%s\nplan: %s\nwant it to use %s", q, plan, index)
		}
	}
}
