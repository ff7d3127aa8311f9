package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// TestBatchSharesBoundStatements: the writes of one batch share the
// statements bound to its transaction, so a statement that every write
// runs is bound once per batch, not once per execution; and the savepoints
// that keep the writes apart hold their statement journals in memory
// (temp_store MEMORY), not in temporary files written with a system call
// per page.
func TestBatchSharesBoundStatements(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE t (v INTEGER)")
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Hold the writer so that the next writes are committed as one batch.
	holding, release := make(chan struct{}), make(chan struct{})
	held := db.Enqueue(ctx, func(tx *Tx) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	const insert = "INSERT INTO t (v) VALUES ($1)"
	bound := make([]*sql.Stmt, 3)
	var waits []func() error
	for i := range bound {
		waits = append(waits, db.Enqueue(ctx, func(tx *Tx) error {
			bound[i] = tx.stmt(ctx, tx.db.rewrite(insert))
			_, err := tx.Exec(ctx, insert, i)
			return err
		}))
	}
	var tempStore int
	waits = append(waits, db.Enqueue(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, "PRAGMA temp_store").Scan(&tempStore)
	}))
	close(release)
	if err := held(); err != nil {
		t.Fatal(err)
	}
	for _, wait := range waits {
		if err := wait(); err != nil {
			t.Fatal(err)
		}
	}
	if bound[0] == nil {
		t.Fatal("the insert was not prepared")
	}
	for i, st := range bound[1:] {
		if st != bound[0] {
			t.Errorf("write %d of the batch bound the insert again (%p, first %p)", i+1, st, bound[0])
		}
	}
	if tempStore != 2 {
		t.Errorf("temp_store = %d, want 2 (MEMORY): savepoint journals would go to temporary files", tempStore)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows = %d, %v; want 3", n, err)
	}
}
