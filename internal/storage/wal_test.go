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
