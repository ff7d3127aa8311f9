package push

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/matrixos/matrixos/internal/storage"
)

// TestPushEventsKeyedByPosition: on SQLite a push_events row's position is
// its row key, with no unique index of its own to write for each send,
// and the migration that made it so keeps the rows.
func TestPushEventsKeyedByPosition(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, Migrations[:4]); err != nil {
		t.Fatal(err)
	}
	const row = `SELECT pos || room_id || event_id || thread_id || ts || actions || notified FROM push_events`
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO push_events (pos, room_id, event_id, thread_id, ts, actions, notified)
			VALUES (9, '!r:test', '$e', 'main', 90, '[]', '["@a:test"]')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var before, after string
	if err := db.QueryRow(ctx, row).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, row).Scan(&after); err != nil {
		t.Fatal(err)
	}
	var pkIndexes int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM pragma_index_list('push_events') WHERE origin = 'pk'").Scan(&pkIndexes); err != nil {
		t.Fatal(err)
	}
	if after != before || pkIndexes != 0 {
		t.Errorf("after the migration: row %q (want %q), %d indexes for the key (want none)", after, before, pkIndexes)
	}
}
