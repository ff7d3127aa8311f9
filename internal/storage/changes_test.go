package storage_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// openTwice opens the same database twice, as the node and the admin CLI
// do.
func openTwice(t *testing.T, engine string) (node, cli *storage.DB) {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "matrixos.db")
	if engine == "postgres" {
		dsn = pgtest.Start(t)
	}
	open := func() *storage.DB {
		db, err := storage.Open(context.Background(), dsn, nil)
		if err != nil {
			t.Fatalf("open %s: %v", engine, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return open(), open()
}

func record(t *testing.T, db *storage.DB, topic, payload string) storage.Change {
	t.Helper()
	ctx := context.Background()
	var c storage.Change
	err := db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		c, err = tx.RecordChange(ctx, topic, payload)
		return err
	})
	if err != nil {
		t.Fatalf("record %s: %v", topic, err)
	}
	return c
}

func receive(t *testing.T, ch <-chan storage.Change) storage.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change applied within 5s")
		return storage.Change{}
	}
}

func pendingCount(t *testing.T, db *storage.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM pending_changes").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWatchChanges: a change recorded through one DB is applied by the
// watcher of another on the same database: those pending at the start
// before WatchChanges returns, later ones as they commit; the watcher's
// own DB's changes are left alone, and applied changes are deleted.
func TestWatchChanges(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			node, cli := openTwice(t, engine)
			early := record(t, cli, "test.early", "1")

			applied := make(chan storage.Change, 10)
			stop := node.WatchChanges(ctx, func(_ context.Context, c storage.Change) error {
				applied <- c
				return nil
			})
			defer stop()
			select {
			case c := <-applied:
				if c != early {
					t.Fatalf("applied %+v at the start, want %+v", c, early)
				}
			default:
				t.Fatal("the change pending at the start was not applied before WatchChanges returned")
			}

			own := record(t, node, "test.own", "2")
			start := time.Now()
			late := record(t, cli, "test.late", "3")
			// Changes are applied oldest first, so the node's own change,
			// recorded before, would come first.
			if c := receive(t, applied); c != late {
				t.Fatalf("applied %+v, want %+v (the node's own change %+v must be left to the node)", c, late, own)
			}
			t.Logf("%s: applied %v after the commit", engine, time.Since(start))

			// The watcher deleted its changes; the node's own waits for it.
			for deadline := time.Now().Add(5 * time.Second); pendingCount(t, cli) != 1; {
				if time.Now().After(deadline) {
					t.Fatalf("%d pending changes, want only the node's own", pendingCount(t, cli))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := node.ChangesApplied(ctx, own.ID); err != nil {
				t.Fatal(err)
			}
			if n := pendingCount(t, cli); n != 0 {
				t.Fatalf("%d pending changes after ChangesApplied", n)
			}

			// After stop, nothing more is applied: a change recorded now
			// waits for the next watcher.
			stop()
			after := record(t, cli, "test.after", "4")
			again := make(chan storage.Change, 10)
			stop2 := node.WatchChanges(ctx, func(_ context.Context, c storage.Change) error {
				again <- c
				return nil
			})
			defer stop2()
			if c := receive(t, again); c != after {
				t.Fatalf("the next watcher applied %+v, want %+v", c, after)
			}
			if len(applied) != 0 {
				t.Fatalf("a stopped watcher applied %+v", <-applied)
			}
		})
	}
}

// TestWatchChangesRetry: a change whose application fails stays pending
// and is not tried again at once, while later changes are applied.
func TestWatchChangesRetry(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			node, cli := openTwice(t, engine)
			failing := record(t, cli, "test.fail", "")
			attempts := 0
			applied := make(chan storage.Change, 10)
			stop := node.WatchChanges(context.Background(), func(_ context.Context, c storage.Change) error {
				if c.ID == failing.ID {
					attempts++
					return errors.New("cannot apply")
				}
				applied <- c
				return nil
			})
			defer stop()
			// Several passes of the watcher go by.
			for i := range 3 {
				ok := record(t, cli, "test.ok", strconv.Itoa(i))
				if c := receive(t, applied); c != ok {
					t.Fatalf("applied %+v, want %+v", c, ok)
				}
			}
			for deadline := time.Now().Add(5 * time.Second); pendingCount(t, cli) != 1; {
				if time.Now().After(deadline) {
					t.Fatalf("%d pending changes, want the failing one alone", pendingCount(t, cli))
				}
				time.Sleep(10 * time.Millisecond)
			}
			stop()
			if attempts != 1 {
				t.Fatalf("the failing change was tried %d times, want once before its retry delay", attempts)
			}
		})
	}
}
