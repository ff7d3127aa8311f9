package storage

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWALFrameOneWrite: the writer's log files write each frame (header
// and page) with one call instead of two, and the log they leave is one
// SQLite recovers: a copy of the files taken while the node runs (what a
// kill -9 leaves) opens with every committed row and passes the integrity
// check.
func TestWALFrameOneWrite(t *testing.T) {
	defer setWALLimits(time.Hour, 100000, 128)() // no checkpoint: every frame stays in the log
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "test.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const rows = 200
	framesBefore, writesBefore := db.wal.frames.Load(), writeSyscalls(t)
	for i := range rows {
		if err := db.Write(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO t (id, v) VALUES ($1, randomblob(3000))", i)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	frames, writes := db.wal.frames.Load()-framesBefore, writeSyscalls(t)-writesBefore
	if frames < rows {
		t.Fatalf("%d frames for %d commits: the log started again or the hook missed commits", frames, rows)
	}
	// A frame per commit or two, and nothing else writes meanwhile but
	// the checkpointer's syncs (no write calls): two writes per frame
	// before, one now.
	if writes > frames*5/4 {
		t.Errorf("%d write system calls for %d log frames, want one per frame", writes, frames)
	}

	// A crash image: the database and its log as they are on disk now.
	crash := filepath.Join(t.TempDir(), "crash.db")
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crash+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyDB, err := Open(ctx, crash, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer copyDB.Close()
	var n int
	if err := copyDB.QueryRow(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != rows {
		t.Fatalf("rows in the crash image = %d, %v; want %d", n, err, rows)
	}
	var check string
	if err := copyDB.QueryRow(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
}

// writeSyscalls is the number of write system calls this process has made
// (syscw in /proc/self/io); the test is skipped where that is not known.
func writeSyscalls(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("write system calls not counted here: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscw in /proc/self/io")
	return 0
}
