package storage

import (
	"context"
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
// the writer to copy that remainder itself between two batches. Nothing is
// appended during that short pass, so the next write transaction starts
// the log again, overwriting the file from its start.
var (
	checkpointInterval = time.Second
	walRestartFrames   = 1000 // 4 MiB of 4 KiB pages, SQLite's own autocheckpoint size
	walCatchUpFrames   = 128
)

// walCatchUpPasses bounds the checkpointer's extra passes after one tick.
const walCatchUpPasses = 4

// walState is what the writer and the checkpointer know of the log.
type walState struct {
	frames  atomic.Int64 // frames in the log after the last commit (WAL hook)
	restart atomic.Bool  // the writer should finish a checkpoint between batches
	passes  atomic.Int64 // checkpoint passes run, for tests
}

// watch registers, on each write connection, the hook that records the
// log's size after every commit.
func (w *walState) watch(c *sqlite3.Conn) error {
	c.WALHook(func(_ *sqlite3.Conn, _ string, frames int) error {
		w.frames.Store(int64(frames))
		return nil
	})
	return nil
}

// checkpointer moves the log's pages into the database file in the
// background: a PASSIVE pass every checkpointInterval once the log holds
// walRestartFrames frames, which never waits for readers or the writer and
// copies what it can. A shorter log is left as it is: a pass costs two
// fsyncs, which delay the commit that runs beside them (a wake-up's send
// waits for its commit), and a few frames in the log cost readers nothing.
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
		}
	}
}

// checkpointPasses runs one pass, and when the log is long, up to
// walCatchUpPasses more until the pass is behind the writer by at most
// walCatchUpFrames, then hands the rest, if any, to the writer
// (finishCheckpoint). A pass that copied the whole log while the writer
// committed nothing asks the writer for nothing: the writer's pass would
// run after the next batch, which has already started the log again, and
// copy that batch's frames for two fsyncs that gain nothing, beside the
// work the batch's commit woke (a fan-out's long-polls after its first
// send).
func (db *DB) checkpointPasses() {
	if db.wal.frames.Load() < int64(walRestartFrames) {
		return
	}
	for range 1 + walCatchUpPasses {
		logFrames, copied, err := db.checkpoint()
		if err != nil {
			db.log.Warn("WAL checkpoint", "err", err)
			return
		}
		if logFrames < walRestartFrames {
			return
		}
		if logFrames-copied <= walCatchUpFrames {
			// A log copied to its end while the writer committed
			// nothing starts again at the next write transaction by
			// itself; a remainder, or frames committed meanwhile,
			// need the writer.
			if copied < logFrames || db.wal.frames.Load() != int64(logFrames) {
				db.wal.restart.Store(true)
			}
			return
		}
	}
}

// finishCheckpoint runs on the writer goroutine between two batches: when
// the checkpointer asked for it, it copies the frames the checkpointer's
// last pass left behind, so that the next write transaction starts the
// log again.
func (db *DB) finishCheckpoint() {
	if !db.wal.restart.Swap(false) {
		return
	}
	if _, _, err := db.checkpoint(); err != nil {
		db.log.Warn("WAL checkpoint", "err", err)
	}
}

// checkpoint runs a PASSIVE checkpoint and returns the frames in the log
// and those copied into the database file. A checkpoint already running
// makes it return at once, having copied nothing.
func (db *DB) checkpoint() (logFrames, copied int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db.wal.passes.Add(1)
	start := time.Now()
	var busy int
	err = db.write.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
	checkpointSeconds.Observe(time.Since(start).Seconds())
	return logFrames, copied, err
}
