package storage

import (
	"context"
	"errors"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// SQLite's write-ahead log is copied back into the database file by a
// checkpoint, and the log starts again from its beginning only at the
// start of a write transaction that finds every frame copied. Checkpoints
// run in the background (checkpointer), not in the commit that fills the
// log, which would stall that write and every one queued behind it. But a
// background checkpoint never catches up with a writer that never pauses:
// frames are appended while it copies, so under sustained writes the log
// never starts again. It then grows without bound (hundreds of megabytes
// for a few thousand messages), every frame is written past the end of the
// file (an extending write costs the file system about twice an
// overwrite), and readers search an ever larger log index.
//
// So when the log has grown past walRestartFrames, the checkpointer runs
// further passes until it is behind by at most walCatchUpFrames, and asks
// the writer to copy that remainder (or, after walCatchUpPasses, whatever
// the passes left) itself between two batches. Nothing is
// appended during that short pass, so the next write transaction starts
// the log again, overwriting the file from its start.
var (
	checkpointInterval = time.Second
	walRestartFrames   = 1000 // 4 MiB of 4 KiB pages, SQLite's own autocheckpoint size
	walCatchUpFrames   = 128
)

// walLimitFactor times walRestartFrames is the log's size past which the
// writer copies it itself between two batches (finishCheckpoint).
const walLimitFactor = 4

// walCatchUpPasses bounds the checkpointer's extra passes after one tick.
const walCatchUpPasses = 4

// walState is what the writer and the checkpointer know of the log.
type walState struct {
	path    string       // the log file
	frames  atomic.Int64 // frames in the log after the last commit (WAL hook)
	commits atomic.Int64 // commits so far (WAL hook)
	synced  atomic.Int64 // commits when the checkpointer last synced the log
	restart atomic.Bool  // the writer should finish a checkpoint between batches
	passes  atomic.Int64 // checkpoint passes run, for tests
	syncs   atomic.Int64 // syncs of the log by the checkpointer, for tests
	// checkpointing is held through each checkpoint pass, so that a writer
	// past the log's limit waits for the checkpointer's pass to end and
	// then copies the rest, instead of finding it busy and going on.
	checkpointing sync.Mutex
}

// watch registers, on each write connection, the hook that records the
// log's size after every commit.
func (w *walState) watch(c *sqlite3.Conn) error {
	c.WALHook(func(_ *sqlite3.Conn, _ string, frames int) error {
		w.frames.Store(int64(frames))
		w.commits.Add(1)
		return nil
	})
	return nil
}

// syncLog flushes the log file to the disk when commits were added to it
// since the last time. Commits do not sync it themselves
// (synchronous=NORMAL, see Open), and a short log is not checkpointed, so
// without this a quiet node's last commits could stay in the page cache
// indefinitely; with it a power loss loses at most the commits of the last
// checkpointInterval. Syncing another descriptor of the file flushes the
// file, whoever wrote it; frames written after the sync began are
// checksummed, so recovery ignores any that did not reach the disk whole.
func (db *DB) syncLog() {
	commits := db.wal.commits.Load()
	if commits == db.wal.synced.Load() {
		return
	}
	f, err := os.OpenFile(db.wal.path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		db.wal.synced.Store(commits) // checkpointed and removed
		return
	}
	if err != nil {
		db.log.Warn("open WAL to sync it", "err", err)
		return
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		db.log.Warn("sync WAL", "err", err)
		return
	}
	db.wal.synced.Store(commits)
	db.wal.syncs.Add(1)
}

// checkpointer moves the log's pages into the database file in the
// background: a PASSIVE pass every checkpointInterval once the log holds
// walRestartFrames frames, which never waits for readers or the writer and
// copies what it can. A shorter log is left as it is: a pass costs two
// fsyncs, which delay the commit that runs beside them (a wake-up's send
// waits for its commit), and a few frames in the log cost readers nothing.
// Each tick it also syncs the log when there were commits (syncLog).
func (db *DB) checkpointer() {
	defer close(db.checkpointDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			db.checkpointPasses()
			db.syncLog()
		}
	}
}

// checkpointPasses runs one pass, and when the log is long, up to
// walCatchUpPasses more until the pass is behind the writer by at most
// walCatchUpFrames, then hands the rest to the writer (finishCheckpoint).
// A writer that appends faster than the passes copy (commits do not wait
// for the disk) is handed the rest as soon as a pass stops gaining on it,
// however long: its pause to copy it is what keeps the log bounded.
func (db *DB) checkpointPasses() {
	if db.wal.frames.Load() < int64(walRestartFrames) {
		return
	}
	behind := math.MaxInt
	for range 1 + walCatchUpPasses {
		logFrames, copied, err := db.checkpoint()
		if err != nil {
			db.log.Warn("WAL checkpoint", "err", err)
			return
		}
		if logFrames < walRestartFrames {
			return
		}
		if logFrames-copied <= walCatchUpFrames || logFrames-copied >= behind {
			break // caught up, or not gaining on the writer
		}
		behind = logFrames - copied
	}
	db.wal.restart.Store(true)
}

// finishCheckpoint runs on the writer goroutine between two batches: when
// the checkpointer asked for it, it copies the frames the checkpointer's
// last pass left behind, so that the next write transaction starts the
// log again.
//
// It also copies the log when it has grown past walLimitFactor times
// walRestartFrames, whether asked or not: when the disk is slow to sync,
// the checkpointer's passes can fall behind a writer whose commits do not
// wait for the disk, and the writer's pause is then what bounds the log.
func (db *DB) finishCheckpoint() {
	asked := db.wal.restart.Swap(false)
	if !asked && db.wal.frames.Load() < int64(walLimitFactor*walRestartFrames) {
		return
	}
	if _, _, err := db.checkpoint(); err != nil {
		db.log.Warn("WAL checkpoint", "err", err)
	}
}

// checkpoint runs a PASSIVE checkpoint and returns the frames in the log
// and those copied into the database file. It waits for a pass already
// running (walState.checkpointing).
func (db *DB) checkpoint() (logFrames, copied int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db.wal.checkpointing.Lock()
	defer db.wal.checkpointing.Unlock()
	db.wal.passes.Add(1)
	var busy int
	err = db.write.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
	return logFrames, copied, err
}
