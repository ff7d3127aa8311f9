package rooms

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/storage"
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

// TestEventPositionIsRowKey: on SQLite an event's position is its row's
// key, with no unique index of its own to write for each event, and the
// migration that made it so keeps every event as it was.
func TestEventPositionIsRowKey(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, Migrations[:13]); err != nil {
		t.Fatal(err)
	}
	const columns = `pos, event_id, room_id, type, state_key, sender, depth, origin_ts, json, snapshot_before,
		rejected, redacted_by, txn_id, device_id, rel_type, relates_to, thread_id, gap`
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		for _, row := range [][]any{
			{int64(-3), "$outlier", "!r:test", "m.room.member", "@bob:test", "@bob:test", 4, 40, `{"a":1}`, 0, true, nil, nil, nil, nil, nil, nil, false},
			{int64(7), "$msg", "!r:test", "m.room.message", nil, "@alice:test", 5, 50, `{}`, 6, false, "$red", "t1", "DEV", "m.thread", "$root", "$root", true},
		} {
			if _, err := tx.Exec(ctx, "INSERT INTO events ("+columns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)", row...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dump := func() string {
		rows, err := db.Query(ctx, "SELECT "+columns+" FROM events ORDER BY pos")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out strings.Builder
		for rows.Next() {
			vals := make([]any, 18)
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&out, vals...)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	before := dump()
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	if after := dump(); after != before {
		t.Errorf("events after the migration:\n%s\nwant\n%s", after, before)
	}
	var pkIndexes, notRowKey int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM pragma_index_list('events') WHERE origin = 'pk'").Scan(&pkIndexes); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM events WHERE rowid != pos").Scan(&notRowKey); err != nil {
		t.Fatal(err)
	}
	if pkIndexes != 0 || notRowKey != 0 {
		t.Errorf("%d indexes for the key, %d rows whose position is not their row key; want none", pkIndexes, notRowKey)
	}
	rows, err := db.Query(ctx, "SELECT name FROM pragma_index_list('events') ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"events_relates", "events_relates_pos", "events_room_pos", "events_room_state", "events_room_thread", "events_room_topo", "events_room_ts"}
	for _, name := range want {
		if !slices.Contains(names, name) {
			t.Errorf("index %s missing after the migration (indexes: %q)", name, names)
		}
	}
}
