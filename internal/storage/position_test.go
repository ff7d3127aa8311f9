package storage

import (
	"context"
	"path/filepath"
	"testing"
)

// TestStoredPositionRunsAhead: the stored stream position is written only
// when a batch hands out a position past it, then with positionReserve to
// spare, so the batches after it leave the row alone; a reopened database
// hands out positions past every one handed out before.
func TestStoredPositionRunsAhead(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	open := func() *DB {
		t.Helper()
		db, err := Open(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	next := func(db *DB) int64 {
		t.Helper()
		var pos int64
		if err := db.Write(ctx, func(tx *Tx) error { pos = tx.NextPos(); return nil }); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	stored := func(db *DB) int64 {
		t.Helper()
		var v int64
		if err := db.QueryRow(ctx, "SELECT value FROM stream_position WHERE id = 1").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	db := open()
	first := next(db)
	reserved := stored(db)
	if reserved != first+positionReserve {
		t.Fatalf("stored %d after handing out %d, want %d", reserved, first, first+positionReserve)
	}
	var last int64
	for range 10 {
		last = next(db)
	}
	if v := stored(db); v != reserved {
		t.Fatalf("stored %d after positions within the reserve, want it left at %d", v, reserved)
	}
	if err := db.Write(ctx, func(tx *Tx) error { // past the reserve
		for range positionReserve {
			last = tx.NextPos()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if v := stored(db); v < last {
		t.Fatalf("stored %d after handing out %d", v, last)
	}
	db.Close()
	db = open()
	defer db.Close()
	if p := next(db); p <= last {
		t.Fatalf("after reopening handed out %d, not past %d", p, last)
	}
}
