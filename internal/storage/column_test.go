package storage

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

// TestColumn: Column returns a one-column query's values in order, from a
// DB and from a Tx, and none for no rows.
func TestColumn(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TABLE column_test (name TEXT, n BIGINT)"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO column_test (name, n) VALUES ('a', 1), ('b', 2), ('c', 3)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	names, err := Column[string](ctx, db, "SELECT name FROM column_test WHERE n > $1 ORDER BY n", 1)
	if err != nil || !slices.Equal(names, []string{"b", "c"}) {
		t.Fatalf("names = %q, %v", names, err)
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		ns, err := Column[int64](ctx, tx, "SELECT n FROM column_test ORDER BY n")
		if err != nil || !slices.Equal(ns, []int64{1, 2, 3}) {
			t.Fatalf("in a Tx: %v, %v", ns, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if none, err := Column[string](ctx, db, "SELECT name FROM column_test WHERE n > 9"); err != nil || len(none) != 0 {
		t.Fatalf("no rows: %q, %v", none, err)
	}
}
