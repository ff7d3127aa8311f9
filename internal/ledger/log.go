package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"k8s.io/klog/v2"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// StateType is the state event (state key "") that turns the ledger on for
// a room with the content {"enabled": true} and off with anything else.
const StateType = "org.matrixos.ledger"

// eventsLog names the events log's row in ledger_marks.
const eventsLog = "events"

const (
	// batchSize is the most events one step of the follower reads and
	// appends, and Tessera's batch size, so a full step is sequenced at
	// once.
	batchSize = 1000
	// batchAge is how long Tessera waits for a batch to fill.
	batchAge = 100 * time.Millisecond
	// checkpointInterval is how often a new checkpoint is signed while
	// the log grows: an appended event is in a checkpoint within it.
	checkpointInterval = 200 * time.Millisecond
	// followInterval is how often the follower looks for events without
	// a wake-up (one that was missed, or events another process stored).
	followInterval = time.Second
)

// Options configure a Log.
type Options struct {
	// Dir is the log's directory (<data>/ledger/events).
	Dir string
	// Origin is the checkpoints' origin line and the key's name (see
	// EventsOrigin).
	Origin string
	// Key signs the checkpoints: the ledger's key (see DeriveKey).
	Key ed25519.PrivateKey
	// All logs the events of every room, not only those with the ledger
	// on.
	All bool
	// States is the rooms engine (*rooms.Engine): the follower reads the
	// committed events from it, and which rooms have the ledger on from
	// their resolved state's StateType event. Without it the follower
	// logs nothing (tests that append directly leave it out).
	States RoomStates
	// Public serves the log's checkpoint and tiles to anyone; without it
	// only server admins read them (the key is always public).
	Public bool
}

// RoomStates is what the follower reads of the rooms engine
// (*rooms.Engine).
type RoomStates interface {
	// StateChanges returns where a state key of the rooms' current state
	// may have changed (see rooms.Engine.StateChanges).
	StateChanges(ctx context.Context, evType, stateKey string, from, to int64) ([]rooms.StateChange, error)
	// Events reads events by ID.
	Events(ctx context.Context, ids []id.EventID) ([]*rooms.Event, error)
	// CommittedEvents reads the committed events after a position (see
	// rooms.Engine.CommittedEvents).
	CommittedEvents(ctx context.Context, after, upTo int64, f rooms.EventFilter, limit int) ([]*rooms.Event, int64, error)
}

// Log is the node's events log: a Tessera log on the local disk, fed from
// the events table by a follower (see the package documentation).
type Log struct {
	db   *storage.DB
	log  *slog.Logger
	opts Options
	// PublicKey is the log's note verifier key.
	PublicKey string
	prover    *Prover

	appender *tessera.Appender
	shutdown func(context.Context) error
	reader   tessera.LogReader
	cancel   context.CancelFunc

	// appendMu makes the follower's steps and Append take turns, so
	// entries land in the log in the order their marks are recorded.
	appendMu sync.Mutex
	mark     mark // guarded by appendMu
	loaded   bool // mark read from the database; guarded by appendMu
	// enabled holds the rooms with the ledger on. Guarded by appendMu.
	enabled *follower.RoomSet
	// recovered are the entries at indexes [mark.size, mark.size +
	// len(recovered)): in the log, but not yet recorded (a crash came
	// between their append and their mark). Guarded by appendMu.
	recovered []Entry
	// sizeKnown is set once recover has read the log's size, which is
	// then mark.size + len(recovered) as long as every append is
	// recorded; an append or record that fails clears it, so the next
	// step reads the size again. Guarded by appendMu.
	sizeKnown bool

	// scanned is mark.pos, for readers that do not take appendMu.
	scanned atomic.Int64

	follower *follower.Follower
	// stopCosigner stops asking witnesses (see StartCosigning).
	stopCosigner func()
}

// mark is how far the follower has come: the stream position up to which
// the events table has been read, and the log's size then.
type mark struct {
	pos  int64
	size uint64
}

// Open opens (or creates) the log in opts.Dir. Call Start to follow the
// events table and Close to stop.
func Open(ctx context.Context, db *storage.DB, log *slog.Logger, opts Options) (*Log, error) {
	t, err := openTessera(ctx, log, opts.Dir, opts.Origin, opts.Key)
	if err != nil {
		return nil, err
	}
	l := &Log{
		db: db, log: log, opts: opts, PublicKey: t.vkey,
		prover:   NewProver(db, opts.Dir, t.vkey),
		appender: t.appender, shutdown: t.shutdown, reader: t.reader, cancel: t.cancel,
	}
	l.enabled = follower.NewRoomSet(db, "SELECT room_id FROM ledger_rooms WHERE enabled")
	l.follower = follower.New("ledger", followInterval, log, l.Step)
	return l, nil
}

// tesseraLog is a Tessera log on the local disk, signed by the node.
type tesseraLog struct {
	vkey     string
	appender *tessera.Appender
	shutdown func(context.Context) error
	reader   tessera.LogReader
	cancel   context.CancelFunc
}

// openTessera opens the Tessera log in dir whose checkpoints key signs
// with the origin line origin.
func openTessera(ctx context.Context, log *slog.Logger, dir, origin string, key ed25519.PrivateKey) (*tesseraLog, error) {
	signer, vkey, err := NewSigner(origin, key)
	if err != nil {
		return nil, err
	}
	resignOnNewKey(dir, vkey, log)
	routeKlog(log)
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return nil, fmt.Errorf("ledger storage %s: %w", dir, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	appendOpts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(batchSize, batchAge).
		WithCheckpointInterval(checkpointInterval)
	appender, shutdown, reader, err := tessera.NewAppender(lctx, driver, appendOpts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("ledger %s: %w", dir, err)
	}
	return &tesseraLog{vkey: vkey, appender: appender, shutdown: shutdown, reader: reader, cancel: cancel}, nil
}

// close waits until every appended entry is in a checkpoint and stops
// Tessera.
func (t *tesseraLog) close(ctx context.Context) error {
	err := t.shutdown(ctx)
	t.cancel()
	if err != nil {
		return fmt.Errorf("ledger shutdown: %w", err)
	}
	return nil
}

// appendData adds leaves to a Tessera log in order and waits until all are
// integrated; it returns their indexes, which follow one another.
func appendData(ctx context.Context, appender *tessera.Appender, leaves [][]byte) ([]uint64, error) {
	if len(leaves) == 0 {
		return nil, nil
	}
	futures := make([]tessera.IndexFuture, len(leaves))
	for i, leaf := range leaves {
		futures[i] = appender.Add(ctx, tessera.NewEntry(leaf))
	}
	idx := make([]uint64, len(leaves))
	for i, f := range futures {
		got, err := f()
		if err != nil {
			return nil, fmt.Errorf("ledger append: %w", err)
		}
		idx[i] = got.Index
		if i > 0 && idx[i] != idx[i-1]+1 {
			return nil, fmt.Errorf("ledger append: entry %d landed at index %d after %d", i, idx[i], idx[i-1])
		}
	}
	return idx, nil
}

// resignOnNewKey removes a checkpoint that the log's key does not verify
// (the node's signing key was rotated), so that Tessera signs the tree
// again with the current key at once instead of when the log next grows.
func resignOnNewKey(dir, vkey string, log *slog.Logger) {
	path := filepath.Join(dir, layout.CheckpointPath)
	raw, err := os.ReadFile(path)
	if err != nil {
		return // none yet: Tessera writes the first
	}
	if _, err := OpenCheckpoint(raw, vkey); err == nil {
		return
	}
	log.Info("ledger: the checkpoint was signed with another key (the signing key was rotated); signing it with the current one", "key", vkey)
	if err := os.Remove(path); err != nil {
		log.Error("ledger: remove the checkpoint signed with another key", "err", err)
	}
}

// Close stops the follower, waits until every appended entry is in a
// checkpoint and stops Tessera.
func (l *Log) Close(ctx context.Context) error {
	if l.stopCosigner != nil {
		l.stopCosigner()
	}
	l.follower.Close()
	l.saveMark(ctx)
	err := l.shutdown(ctx)
	l.cancel()
	if err != nil {
		return fmt.Errorf("ledger shutdown: %w", err)
	}
	return nil
}

// Prover returns what proves the log's entries.
func (l *Log) Prover() *Prover { return l.prover }

// Append appends entries to the log directly (not from the events table;
// tests and benchmarks use it), waits until they are integrated, records
// their indexes and returns the first one.
func (l *Log) Append(ctx context.Context, entries []Entry) (uint64, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if err := l.loadMark(ctx); err != nil {
		return 0, err
	}
	if err := l.recover(ctx); err != nil {
		return 0, err
	}
	if len(l.recovered) > 0 {
		return 0, errors.New("ledger: the log has entries the events table has not been matched with yet")
	}
	if len(entries) == 0 {
		return l.mark.size, nil
	}
	first := l.mark.size
	for chunk := range slices.Chunk(entries, batchSize) {
		idx, err := l.appendBatch(ctx, chunk)
		if err != nil {
			return 0, err
		}
		if err := l.record(ctx, chunk, idx, nil, mark{pos: l.mark.pos, size: idx[len(idx)-1] + 1}); err != nil {
			return 0, err
		}
	}
	return first, nil
}

// Size returns the number of entries integrated into the log (some may not
// be in a checkpoint yet).
func (l *Log) Size(ctx context.Context) (uint64, error) {
	return l.reader.IntegratedSize(ctx)
}

// Entries reads the entries [0, size) of the log, in order (a replay of
// the contracts reads its inputs and results from them).
func (l *Log) Entries(ctx context.Context, size uint64) ([]Entry, error) {
	return ReadEntries(ctx, l.opts.Dir, size)
}

// ReadEntries reads the entries [0, size) of the events log in dir, in
// order, without opening it for appends (the commands use it).
func ReadEntries(ctx context.Context, dir string, size uint64) ([]Entry, error) {
	return readEntries(ctx, client.FileFetcher{Root: dir}.ReadEntryBundle, 0, size, size)
}

// CheckedEntries reads every entry of the checkpoint's tree from the
// events log in dir and checks that they make its root.
func CheckedEntries(ctx context.Context, dir string, cp *Checkpoint) ([]Entry, error) {
	entries, err := ReadEntries(ctx, dir, cp.Size)
	if err != nil {
		return nil, err
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, e := range entries {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(e.Marshal()), nil); err != nil {
			return nil, err
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(root, cp.Root) {
		return nil, fmt.Errorf("the entries of %s do not make the checkpoint's root: the log was changed", dir)
	}
	return entries, nil
}

// appendBatch adds entries to the log in order and waits until all are
// integrated; it returns their indexes, which follow one another.
func (l *Log) appendBatch(ctx context.Context, entries []Entry) ([]uint64, error) {
	leaves := make([][]byte, len(entries))
	for i, e := range entries {
		leaves[i] = e.Marshal()
	}
	idx, err := appendData(ctx, l.appender, leaves)
	if err != nil {
		l.sizeKnown = false // some may have landed
	}
	return idx, err
}

// loadMark reads the follower's mark once.
func (l *Log) loadMark(ctx context.Context) error {
	if l.loaded {
		return nil
	}
	var m mark
	var size int64
	err := l.db.QueryRow(ctx, "SELECT pos, size FROM ledger_marks WHERE log = $1", eventsLog).Scan(&m.pos, &size)
	if err != nil && !errors.Is(err, errNoRows) {
		return fmt.Errorf("read ledger mark: %w", err)
	}
	m.size = uint64(size)
	l.setMark(m)
	l.loaded = true
	return nil
}

// recover compares the log's size with the recorded one. Entries beyond
// it were appended by a run that stopped before recording them: they are
// read back into l.recovered so that the follower matches them with their
// events instead of appending them again. A log smaller than recorded has
// lost entries, which nothing can repair.
//
// The size is read again only after an append or record failed (sizeKnown):
// reading it takes a file lock and a read of the log's state, at every
// step of the follower (every commit of the node) before.
func (l *Log) recover(ctx context.Context) error {
	if l.sizeKnown {
		return nil
	}
	n, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("ledger size: %w", err)
	}
	have := l.mark.size + uint64(len(l.recovered))
	switch {
	case n < l.mark.size:
		return fmt.Errorf("ledger %s holds %d entries but %d were recorded: entries were lost", l.opts.Dir, n, l.mark.size)
	case n == have:
		l.sizeKnown = true
		return nil
	}
	entries, err := readEntries(ctx, client.FileFetcher{Root: l.opts.Dir}.ReadEntryBundle, l.mark.size, n, n)
	if err != nil {
		return err
	}
	l.log.Info("ledger: entries appended before the last stop are matched with their events", "from", l.mark.size, "to", n)
	l.recovered = entries
	l.sizeKnown = true
	return nil
}

// readEntries reads the entries [from, to) of a log of size logSize.
func readEntries(ctx context.Context, fetch client.EntryBundleFetcherFunc, from, to, logSize uint64) ([]Entry, error) {
	var out []Entry
	for i := from; i < to; {
		bundleIdx := i / layout.EntryBundleWidth
		b, err := client.GetEntryBundle(ctx, fetch, bundleIdx, logSize)
		if err != nil {
			return nil, fmt.Errorf("read ledger entry bundle %d: %w", bundleIdx, err)
		}
		for off := i % layout.EntryBundleWidth; off < uint64(len(b.Entries)) && i < to; off++ {
			e, err := ParseEntry(b.Entries[off])
			if err != nil {
				return nil, fmt.Errorf("ledger entry %d: %w", i, err)
			}
			out = append(out, e)
			i++
		}
		if i%layout.EntryBundleWidth != 0 && i < to {
			return nil, fmt.Errorf("ledger entry bundle %d ends before entry %d", bundleIdx, i)
		}
	}
	return out, nil
}

// record stores, in one transaction, where entries landed, the rooms whose
// ledger was turned on or off, and the new mark; then it is the mark in
// memory too.
func (l *Log) record(ctx context.Context, entries []Entry, idx []uint64, toggles map[string]bool, next mark) error {
	if len(toggles) > 0 {
		l.enabled.Forget() // read again at the next step
	}
	err := l.db.Write(ctx, func(tx *storage.Tx) error {
		for i, e := range entries {
			if _, err := tx.Exec(ctx, `INSERT INTO ledger_entries (event_id, log_index, room_id) VALUES ($1, $2, $3)
				ON CONFLICT (event_id) DO NOTHING`, e.EventID, int64(idx[i]), e.RoomID); err != nil {
				return fmt.Errorf("record ledger entry: %w", err)
			}
		}
		for room, on := range toggles {
			if _, err := tx.Exec(ctx, `INSERT INTO ledger_rooms (room_id, enabled) VALUES ($1, $2)
				ON CONFLICT (room_id) DO UPDATE SET enabled = excluded.enabled`, room, on); err != nil {
				return fmt.Errorf("record ledger room: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO ledger_marks (log, pos, size) VALUES ($1, $2, $3)
			ON CONFLICT (log) DO UPDATE SET pos = excluded.pos, size = excluded.size`, eventsLog, next.pos, int64(next.size))
		if err != nil {
			return fmt.Errorf("record ledger mark: %w", err)
		}
		return nil
	})
	if err != nil {
		l.sizeKnown = false // the log may hold entries that no mark records
		return err
	}
	l.setMark(next)
	return nil
}

// saveMark records the mark where the follower moved it only in memory
// (past events of rooms without the ledger), so that the next start does
// not read them again.
func (l *Log) saveMark(ctx context.Context) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if !l.loaded || len(l.recovered) > 0 {
		return
	}
	if err := l.record(ctx, nil, nil, nil, l.mark); err != nil {
		l.log.Warn("ledger: record the mark at shutdown", "err", err)
	}
}

// setMark moves the mark in memory.
func (l *Log) setMark(m mark) {
	l.mark = m
	l.scanned.Store(m.pos)
}

// klogOnce guards klog.SetLogger: klog's logger is process-wide, and
// setting it again while another node's tessera goroutines log through it
// is a data race (several nodes share a process in tests).
var klogOnce sync.Once

// routeKlog sends tessera's klog output to log, the first ledger's logger
// in the process (a node runs one ledger).
func routeKlog(log *slog.Logger) {
	klogOnce.Do(func() {
		klog.SetLogger(logr.FromSlogHandler(log.With("component", "tessera").Handler()))
	})
}
