package storage

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWALStartsAgainUnderSustainedWrites: with writers that never pause,
// the write-ahead log still starts again from its beginning (the writer
// finishes the checkpointer's pass between two batches), so the log file
// stays near the size at which it is restarted instead of growing with
// every write; nothing written is lost.
func TestWALStartsAgainUnderSustainedWrites(t *testing.T) {
	defer setWALLimits(20*time.Millisecond, 64, 16)()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE blobs (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// 8 writers, each write a new 4 KiB row (a page or more): 6,000 pages,
	// about 24 MiB of log were it never to start again.
	const writers, each = 8, 750
	blob := make([]byte, 4096)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for range each {
				if err := db.Write(ctx, func(tx *Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO blobs (v) VALUES ($1)", blob)
					return err
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if limit := int64(6 << 20); st.Size() > limit {
		t.Errorf("WAL file is %d bytes after %d writes of 4 KiB, want at most %d: it never started again", st.Size(), writers*each, limit)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM blobs").Scan(&n); err != nil || n != writers*each {
		t.Fatalf("rows = %d, %v; want %d", n, err, writers*each)
	}
}

// setWALLimits shortens the checkpointer's interval and the log sizes for
// a test, and returns what puts them back.
func setWALLimits(interval time.Duration, restartFrames, catchUpFrames int) (undo func()) {
	oldInterval, oldRestart, oldCatchUp := checkpointInterval, walRestartFrames, walCatchUpFrames
	checkpointInterval, walRestartFrames, walCatchUpFrames = interval, restartFrames, catchUpFrames
	return func() { checkpointInterval, walRestartFrames, walCatchUpFrames = oldInterval, oldRestart, oldCatchUp }
}

// pageWriter opens a database with a table t and returns it with a
// function that commits n writes of one 4 KiB row each.
func pageWriter(t *testing.T) (*DB, func(n int)) {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "test.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE t (v BLOB NOT NULL)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db, func(n int) {
		t.Helper()
		for range n {
			if err := db.Write(ctx, func(tx *Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO t (v) VALUES (zeroblob(4096))")
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitForPass waits until the checkpointer has run a pass.
func waitForPass(t *testing.T, db *DB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for db.wal.passes.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint pass over a log of %d frames", db.wal.frames.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShortWALNotCheckpointed: a log shorter than walRestartFrames is left
// alone (a pass would cost two fsyncs beside the writer's commits); one
// that reaches it is checkpointed.
func TestShortWALNotCheckpointed(t *testing.T) {
	t.Cleanup(setWALLimits(10*time.Millisecond, 200, 16)) // after pageWriter's database is closed
	db, write := pageWriter(t)
	write(10)
	if n := db.wal.frames.Load(); n == 0 {
		t.Fatal("the WAL hook saw no frames")
	}
	time.Sleep(100 * time.Millisecond) // ten checkpointer ticks
	if n := db.wal.passes.Load(); n != 0 {
		t.Fatalf("%d checkpoint passes over a log of %d frames, want none", n, db.wal.frames.Load())
	}
	write(150) // past 200 frames
	waitForPass(t, db)
}

// TestCaughtUpWALLeavesWriterAlone: when the checkpointer's pass copies
// the whole log (the writer idle), the next write starts the log again
// by itself and the writer runs no checkpoint pass of its own after it.
func TestCaughtUpWALLeavesWriterAlone(t *testing.T) {
	t.Cleanup(setWALLimits(time.Hour, 200, 16)) // the test runs the passes; restored after the database is closed
	db, write := pageWriter(t)
	write(150) // past 200 frames
	db.checkpointPasses()
	passes := db.wal.passes.Load()
	write(1)
	if n := db.wal.frames.Load(); n >= 200 {
		t.Fatalf("the log holds %d frames after the write that followed a complete checkpoint, want it started again", n)
	}
	write(1) // the writer is past the first write's batch and what follows it
	if n := db.wal.passes.Load() - passes; n != 0 {
		t.Fatalf("%d checkpoint passes after the write that started the log again, want none", n)
	}
}
