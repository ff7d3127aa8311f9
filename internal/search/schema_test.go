package search_test

import (
	"context"
	"path/filepath"
	"testing"

	searchpkg "github.com/matrixos/matrixos/internal/search"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestIndexedEventsKeyedByPosition: on SQLite an indexed event's position
// is its row key, with no unique index of its own to write for each
// message, and the migration that made it so keeps the rows.
func TestIndexedEventsKeyedByPosition(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, searchpkg.Migrations[:1]); err != nil {
		t.Fatal(err)
	}
	const row = `SELECT pos || room_id || sender || key || origin_ts FROM search_events`
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO search_events (pos, room_id, sender, key, origin_ts) VALUES (9, '!r:test', '@a:test', 'content.body', 90)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var before, after string
	if err := db.QueryRow(ctx, row).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, searchpkg.Migrations); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, row).Scan(&after); err != nil {
		t.Fatal(err)
	}
	var pkIndexes int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM pragma_index_list('search_events') WHERE origin = 'pk'").Scan(&pkIndexes); err != nil {
		t.Fatal(err)
	}
	if after != before || pkIndexes != 0 {
		t.Errorf("after the migration: row %q (want %q), %d indexes for the key (want none)", after, before, pkIndexes)
	}
}
