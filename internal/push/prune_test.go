package push

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/storage"
)

// TestPushEventsWithoutIndexes checks that push_events is written with no
// index besides its key (each was a page of its own in every send's
// commit) and that what read it through them still works from the key:
// Prune deletes the rows recorded before its cutoff, walking them in
// stream order up to the first one recorded after it, and a room's purge
// deletes its rows, found through the room's events, and no others.
func TestPushEventsWithoutIndexes(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := openRoomsDB(t, dsn)
		defer db.Close()
		if got := tableIndexes(t, db, "push_events"); len(got) != 0 {
			t.Errorf("push_events has indexes %v besides its key", got)
		}
		if db.Dialect == storage.SQLite {
			// PostgreSQL's planner reads small tables whole whatever their
			// indexes; SQLite's plan shows what the queries can use.
			for q, args := range map[string][]any{purgeQuery: {"!a:hs"}, "SELECT pos FROM push_events " + pruneWhere: {0, 100}} {
				plan := sqlitePlan(t, db, q, args...)
				if strings.Contains(plan, "SCAN push_events") || strings.Contains(plan, "SCAN events") {
					t.Errorf("%s reads a whole table:\n%s", q, plan)
				}
			}
		}
		// Positions 1-5 in one room, 6 in another, each notifying carol. Recorded at ts: 5 was
		// recorded after 4 by a clock that had stepped back.
		recorded := map[int64]int64{1: 100, 2: 200, 3: 300, 4: 400, 5: 150, 6: 500}
		err := db.Write(ctx, func(tx *storage.Tx) error {
			for pos := int64(1); pos <= 6; pos++ {
				room := "!a:hs"
				if pos == 6 {
					room = "!b:hs"
				}
				evID := fmt.Sprintf("ev%d", pos)
				if _, err := tx.Exec(ctx, `INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_ts, json, snapshot_before)
					VALUES ($1, $2, $3, 'm.room.message', '@bob:hs', $1, 0, '{}', 0)`, pos, evID, room); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO push_events (pos, room_id, event_id, thread_id, ts, actions, notified)
					VALUES ($1, $2, $3, '', $4, $5, $6)`, pos, room, evID, recorded[pos], `[["notify"]]`, "\n@carol:hs\t0"); err != nil {
					return err
				}
			}
			// carol has read them all: only unread rows outlive Prune.
			for _, room := range []string{"!a:hs", "!b:hs"} {
				if _, err := tx.Exec(ctx, `INSERT INTO push_read_marks (user_id, room_id, scope, pos) VALUES ('@carol:hs', $1, '*', 100)`, room); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s := loadService(t, db, nil, &fakeRooms{})
		if err := s.Prune(ctx, time.UnixMilli(350)); err != nil {
			t.Fatal(err)
		}
		if got, want := pushPositions(t, db), []int64{4, 5, 6}; !slices.Equal(got, want) {
			t.Errorf("after pruning before 350: positions %v, want %v", got, want)
		}
		err = db.Write(ctx, func(tx *storage.Tx) error { return s.PurgeRoom(ctx, tx, "!a:hs") })
		if err != nil {
			t.Fatal(err)
		}
		if got, want := pushPositions(t, db), []int64{6}; !slices.Equal(got, want) {
			t.Errorf("after purging !a:hs: positions %v, want %v", got, want)
		}
	})
}

// tableIndexes lists the indexes of table other than its primary key's.
func tableIndexes(t *testing.T, db *storage.DB, table string) []string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND name NOT LIKE 'sqlite_autoindex_%'"
	if db.Dialect == storage.Postgres {
		q = "SELECT indexname FROM pg_indexes WHERE tablename = $1 AND indexname NOT LIKE '%_pkey'"
	}
	rows, err := db.Query(context.Background(), q, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sqlitePlan is SQLite's plan for q.
func sqlitePlan(t *testing.T, db *storage.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.Query(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
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

func pushPositions(t *testing.T, db *storage.DB) []int64 {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT pos FROM push_events ORDER BY pos")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var pos int64
		if err := rows.Scan(&pos); err != nil {
			t.Fatal(err)
		}
		out = append(out, pos)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
