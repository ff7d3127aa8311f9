package node_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/matrixos/matrixos/internal/push"
	"github.com/matrixos/matrixos/internal/search"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestPositionKeyedTables: on SQLite the rows of push_events and
// search_events are keyed by their position (their rowid), with no
// unique index of its own to write for each send, and the migrations
// that made them so keep the rows. (rooms' TestEventPositionIsRowKey
// checks events.)
func TestPositionKeyedTables(t *testing.T) {
	for _, tt := range []struct {
		table      string
		migrations []storage.Migration
		before     int // how many of them came before the change
		insert     string
		row        string // the row as one string
	}{
		{"push_events", push.Migrations, 4,
			`INSERT INTO push_events (pos, room_id, event_id, thread_id, ts, actions, notified) VALUES (9, '!r:test', '$e', 'main', 90, '[]', 'x')`,
			`SELECT pos || room_id || event_id || thread_id || ts || actions || notified FROM push_events`},
		{"search_events", search.Migrations, 1,
			`INSERT INTO search_events (pos, room_id, sender, key, origin_ts) VALUES (9, '!r:test', '@a:test', 'content.body', 90)`,
			`SELECT pos || room_id || sender || key || origin_ts FROM search_events`},
	} {
		t.Run(tt.table, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Migrate(ctx, tt.migrations[:tt.before]); err != nil {
				t.Fatal(err)
			}
			if err := db.Write(ctx, func(tx *storage.Tx) error {
				_, err := tx.Exec(ctx, tt.insert)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			var before, after string
			var pkIndexes int
			if err := db.QueryRow(ctx, tt.row).Scan(&before); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, tt.migrations); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(ctx, tt.row).Scan(&after); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM pragma_index_list('"+tt.table+"') WHERE origin = 'pk'").Scan(&pkIndexes); err != nil {
				t.Fatal(err)
			}
			if after != before || pkIndexes != 0 {
				t.Errorf("after the migration: row %q (want %q), %d indexes for the key (want none)", after, before, pkIndexes)
			}
		})
	}
}
