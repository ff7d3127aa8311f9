package appservice

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Delivery timing: how long an appservice's worker gathers what is queued
// before it sends, and the backoff after a failed transaction.
const (
	BatchDelay = 100 * time.Millisecond
	MinBackoff = time.Second
	MaxBackoff = 5 * time.Minute
	// txnTimeout bounds one transaction's request.
	txnTimeout = 60 * time.Second
	// MaxQueued bounds what is queued for one appservice (items waiting
	// and the unacknowledged transaction's). An appservice whose queue is
	// full misses what happens until it has taken enough to fall below
	// the bound: new items for it are dropped, counted in
	// matrixos_appservice_dropped_total and logged, and the events
	// themselves are stored as ever, so a dead appservice never stops the
	// node or fills its disk. What was queued before stays in order.
	MaxQueued = 100000
)

// Queue delivers transactions to appservices: timeline events in their
// namespaces and, for those that asked, ephemeral events, to-device events,
// device list changes and key counts. Items are queued in the database,
// timeline events in the write that stores the event (OnPersist), so
// nothing acknowledged to a client is lost across a restart or kill -9.
//
// Each appservice with a url has its own worker, started when something
// is queued for it, with at most one transaction in flight: it gathers
// what is queued for BatchDelay, forms a transaction of the oldest items
// (in queue order, at most MaxTxnEvents events), stores it whole with its
// ID in the write that takes the items off the queue, and sends it, the
// same ID and body, with exponential backoff (MinBackoff doubling to
// MaxBackoff) until the appservice answers 2xx. One appservice's failure
// never delays another's.
type Queue struct {
	db       *storage.DB
	log      *slog.Logger
	registry *Registry
	rooms    *rooms.Engine
	client   *http.Client
	metrics  *queueMetrics
	members  memberCache

	// Guarded by mu; tests shorten the timing and lower the bound.
	batchDelay, minBackoff, maxBackoff time.Duration
	maxQueued                          int

	// typingMu and keyCountsMu order the reading of typing users and key
	// counts with the queueing of their writes (see QueueTyping).
	typingMu, keyCountsMu sync.Mutex

	mu      sync.Mutex
	targets map[string]*target
	ctx     context.Context // nil until Start
	stop    context.CancelFunc
	workers sync.WaitGroup
}

// target is the queue's view of one appservice it queues for.
type target struct {
	id   string
	wake chan struct{} // Wake's signal to a worker waiting out a backoff

	// Guarded by Queue.mu.
	running     bool // a worker serves it
	pending     bool // something was queued since the worker last looked
	depth       int  // items queued, the unacknowledged transaction's included
	reserved    int  // items queued in writes not committed yet
	full        bool // depth reached maxQueued; new items are dropped
	failures    int  // failed transactions in a row
	retryAt     time.Time
	failedAt    time.Time
	lastSuccess time.Time
}

// NewQueue returns the delivery queue of the registry's appservices, which
// asks engine about rooms' members and aliases; Start starts delivering.
func NewQueue(db *storage.DB, log *slog.Logger, registry *Registry, engine *rooms.Engine) *Queue {
	return &Queue{
		db: db, log: log, registry: registry, rooms: engine,
		client:     &http.Client{Timeout: txnTimeout},
		metrics:    newQueueMetrics(),
		batchDelay: BatchDelay, minBackoff: MinBackoff, maxBackoff: MaxBackoff, maxQueued: MaxQueued,
		targets: map[string]*target{},
	}
}

// Start loads what is queued and each appservice's backoff, and starts
// delivering. Stop ends delivery; what is queued stays for the next Start.
func (q *Queue) Start(ctx context.Context) error {
	if err := q.load(ctx); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ctx, q.stop = context.WithCancel(context.WithoutCancel(ctx))
	for _, t := range q.targets {
		if t.depth > 0 || t.pending {
			q.startLocked(t)
		}
	}
	return nil
}

// Stop ends every worker and waits for them. A transaction in flight is
// abandoned; it is stored and sent again after the next Start.
func (q *Queue) Stop() {
	q.mu.Lock()
	stop := q.stop
	q.mu.Unlock()
	if stop != nil {
		stop()
	}
	q.workers.Wait()
}

// Reloaded starts the workers of appservices that have something queued,
// for a registration that was just added or given a url again.
func (q *Queue) Reloaded() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.targets {
		if t.depth > 0 {
			q.startLocked(t)
		}
	}
}

// load reads the depth and backoff of every appservice with a queue. It
// reads inside a write, where no other write commits meanwhile and the
// AfterCommit functions of those before have run: the depth it sets
// replaces what queued counted of items committed before the queue
// started (they are in the count), and items committed after it add to
// it, so each is counted once.
func (q *Queue) load(ctx context.Context) error {
	return q.db.Write(ctx, func(tx *storage.Tx) error {
		depths, err := queuedCounts(ctx, tx)
		if err != nil {
			return err
		}
		states, err := deliveryStates(ctx, tx)
		if err != nil {
			return err
		}
		tx.AfterCommit(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			for _, t := range q.targets {
				t.depth = 0
			}
			for asID, st := range states {
				t := q.targetLocked(asID)
				t.depth = st.items
				t.failures, t.retryAt, t.failedAt, t.lastSuccess = st.failures, st.retryAt, st.failedAt, st.lastSuccess
			}
			for asID, n := range depths {
				q.targetLocked(asID).depth += n
			}
			for _, t := range q.targets {
				q.metrics.observe(t)
			}
		})
		return nil
	})
}

// queuedCounts counts the items queued for each appservice.
func queuedCounts(ctx context.Context, tx *storage.Tx) (map[string]int, error) {
	rows, err := tx.Query(ctx, `SELECT appservice_id, COUNT(*) FROM appservice_queue GROUP BY appservice_id`)
	if err != nil {
		return nil, fmt.Errorf("load appservice queue: %w", err)
	}
	defer rows.Close()
	depths := map[string]int{}
	for rows.Next() {
		var asID string
		var n int
		if err := rows.Scan(&asID, &n); err != nil {
			return nil, fmt.Errorf("load appservice queue: %w", err)
		}
		depths[asID] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load appservice queue: %w", err)
	}
	return depths, nil
}

// deliveryState is an appservice's row of appservice_state.
type deliveryState struct {
	items, failures                int
	retryAt, failedAt, lastSuccess time.Time
}

// deliveryStates reads each appservice's unacknowledged transaction size
// and backoff.
func deliveryStates(ctx context.Context, tx *storage.Tx) (map[string]deliveryState, error) {
	rows, err := tx.Query(ctx, `SELECT appservice_id, txn_items, failures, retry_at_ts, failure_ts, last_success_ts FROM appservice_state`)
	if err != nil {
		return nil, fmt.Errorf("load appservice state: %w", err)
	}
	defer rows.Close()
	states := map[string]deliveryState{}
	for rows.Next() {
		var asID string
		var st deliveryState
		var retryAt, failedAt, lastSuccess int64
		if err := rows.Scan(&asID, &st.items, &st.failures, &retryAt, &failedAt, &lastSuccess); err != nil {
			return nil, fmt.Errorf("load appservice state: %w", err)
		}
		st.retryAt, st.failedAt, st.lastSuccess = fromMillis(retryAt), fromMillis(failedAt), fromMillis(lastSuccess)
		states[asID] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load appservice state: %w", err)
	}
	return states, nil
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// targetLocked returns the appservice's target, creating it. q.mu is held.
func (q *Queue) targetLocked(asID string) *target {
	t := q.targets[asID]
	if t == nil {
		t = &target{id: asID, wake: make(chan struct{}, 1)}
		q.targets[asID] = t
	}
	return t
}

// startLocked starts t's worker unless it runs, the queue has not started
// or the appservice has no url (now). q.mu is held.
func (q *Queue) startLocked(t *target) {
	if t.running || q.ctx == nil || q.ctx.Err() != nil {
		return
	}
	if reg := q.registry.ByID(t.id); reg == nil || reg.URL == "" || q.registry.Paused(t.id) {
		return
	}
	t.running = true
	q.workers.Add(1)
	go q.run(t)
}

// reserve reports whether one more item may be queued for the appservice,
// and counts and logs a refusal when its queue is full. An item it allows
// is reserved until the write that queues it commits (and it counts in
// the depth) or aborts (and it is released), so the items of writes not
// committed yet, a big room's or a whole batch's, count against the bound
// too.
func (q *Queue) reserve(asID, kind string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targetLocked(asID)
	if t.depth+t.reserved < q.maxQueued {
		t.reserved++
		return true
	}
	q.metrics.dropped.WithLabelValues(asID, kind).Inc()
	if !t.full {
		t.full = true
		q.log.Warn("appservice queue full: new items for it are dropped until it takes what is queued",
			"appservice", asID, "queued", t.depth, "reserved", t.reserved, "limit", q.maxQueued)
	}
	return false
}

// release gives back a reservation of a write that did not commit.
func (q *Queue) release(asID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targetLocked(asID)
	t.reserved = max(t.reserved-1, 0)
}

// enqueue queues an item for the appservice inside tx: it is delivered if
// and only if tx commits. It reports false when the appservice's queue is
// full and the item was dropped.
func (q *Queue) enqueue(ctx context.Context, tx *storage.Tx, asID, kind string, body []byte) (bool, error) {
	if !q.reserve(asID, kind) {
		return false, nil
	}
	tx.AfterCommit(func() { q.queued(asID) })
	tx.AfterAbort(func() { q.release(asID) })
	if _, err := tx.Exec(ctx, `INSERT INTO appservice_queue (appservice_id, kind, body) VALUES ($1, $2, $3)`, asID, kind, string(body)); err != nil {
		return false, fmt.Errorf("queue %s for appservice %s: %w", kind, asID, err)
	}
	return true, nil
}

// queued tells the appservice's worker that an item was committed for it.
func (q *Queue) queued(asID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targetLocked(asID)
	t.pending = true
	t.reserved = max(t.reserved-1, 0)
	t.depth++
	q.metrics.observe(t)
	q.startLocked(t)
}

// run is an appservice's worker: it sends what is queued, one transaction
// at a time, and returns when the queue is empty, the appservice is gone
// or has no url, is paused, or the queue stops.
func (q *Queue) run(t *target) {
	defer q.workers.Done()
	ctx := q.ctx
	gather := true
	for {
		if gather && !sleep(ctx, q.timing().batchDelay) {
			break
		}
		q.mu.Lock()
		t.pending = false
		q.mu.Unlock()
		if q.registry.Paused(t.id) {
			break
		}
		txn, err := q.nextTxn(ctx, t.id)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			q.log.Warn("appservice queue", "appservice", t.id, "err", err)
			gather = false
			if !sleep(ctx, q.timing().minBackoff) {
				break
			}
			continue
		}
		if txn == nil {
			q.mu.Lock()
			if t.pending && ctx.Err() == nil {
				q.mu.Unlock()
				gather = true
				continue
			}
			t.running = false
			q.mu.Unlock()
			return
		}
		if !q.deliver(ctx, t, txn) {
			break
		}
		gather = !txn.full
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	t.running = false
	if t.depth > 0 && !q.registry.Paused(t.id) && ctx.Err() == nil {
		// A Resume came between the worker's look at the pause and now.
		q.startLocked(t)
	}
}

// SetPaused pauses the appservice (Registry.Pause) or resumes it and
// starts its worker if something is queued for it. Resuming ends a
// backoff: the appservice was paused because it was not running (a
// bridge that was stopped), and the failures before that say nothing
// about the program that runs now; a worker still waiting out the
// backoff would otherwise hold what was queued meanwhile for up to
// MaxBackoff.
func (q *Queue) SetPaused(asID string, paused bool) {
	if paused {
		q.registry.Pause(asID)
		return
	}
	q.registry.Resume(asID)
	q.Wake(asID)
	q.mu.Lock()
	defer q.mu.Unlock()
	if t := q.targets[asID]; t != nil && t.depth > 0 {
		q.startLocked(t)
	}
}

// timing returns the queue's timing settings.
func (q *Queue) timing() struct{ batchDelay, minBackoff, maxBackoff time.Duration } {
	q.mu.Lock()
	defer q.mu.Unlock()
	return struct{ batchDelay, minBackoff, maxBackoff time.Duration }{q.batchDelay, q.minBackoff, q.maxBackoff}
}

// sleep waits for d or until ctx ends; it reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// nextTxn returns the appservice's unacknowledged transaction, or forms
// the next one from the oldest queued items and stores it, or returns nil
// when nothing is queued.
func (q *Queue) nextTxn(ctx context.Context, asID string) (*pendingTxn, error) {
	var txnID, body string
	var items int
	err := q.db.QueryRow(ctx, `SELECT txn_id, txn_body, txn_items FROM appservice_state WHERE appservice_id = $1`, asID).Scan(&txnID, &body, &items)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read the transaction of appservice %s: %w", asID, err)
	}
	if txnID != "" {
		return &pendingTxn{id: txnID, body: []byte(body), items: items, full: true}, nil
	}
	b, lastRow, err := q.gather(ctx, asID)
	if err != nil || b.items == 0 {
		return nil, err
	}
	raw, err := b.body()
	if err != nil {
		return nil, err
	}
	txn := &pendingTxn{body: raw, items: b.items, full: b.full()}
	err = q.db.Write(ctx, func(tx *storage.Tx) error {
		var last int64
		err := tx.QueryRow(ctx, `SELECT last_txn FROM appservice_state WHERE appservice_id = $1`, asID).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read the transaction counter of appservice %s: %w", asID, err)
		}
		txn.id = strconv.FormatInt(last+1, 10)
		if _, err := tx.Exec(ctx, `INSERT INTO appservice_state (appservice_id, last_txn, txn_id, txn_body, txn_items, failures, retry_at_ts, failure_ts, last_success_ts)
VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0)
ON CONFLICT (appservice_id) DO UPDATE SET last_txn = excluded.last_txn, txn_id = excluded.txn_id, txn_body = excluded.txn_body, txn_items = excluded.txn_items`,
			asID, last+1, txn.id, string(raw), b.items); err != nil {
			return fmt.Errorf("store transaction %s of appservice %s: %w", txn.id, asID, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM appservice_queue WHERE appservice_id = $1 AND id <= $2`, asID, lastRow); err != nil {
			return fmt.Errorf("take transaction %s off the queue of appservice %s: %w", txn.id, asID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return txn, nil
}

// gatherRows is how many queued rows one transaction reads at most.
const gatherRows = MaxTxnEvents + MaxTxnEphemeral + MaxTxnToDevice + 200

// gather reads the oldest items queued for the appservice into a
// transaction, stopping before the first item that does not fit, and
// returns the last row it took. An item that cannot be read is counted
// (matrixos_appservice_skipped_total), logged and taken off the queue
// with the transaction, which may then carry nothing else: the rest are
// delivered.
func (q *Queue) gather(ctx context.Context, asID string) (*txnBuilder, int64, error) {
	rows, err := q.db.Query(ctx, `SELECT id, kind, body FROM appservice_queue WHERE appservice_id = $1 ORDER BY id LIMIT $2`, asID, gatherRows)
	if err != nil {
		return nil, 0, fmt.Errorf("read the queue of appservice %s: %w", asID, err)
	}
	defer rows.Close()
	b := newTxnBuilder()
	var lastRow int64
	for rows.Next() {
		var item queuedItem
		if err := rows.Scan(&item.rowID, &item.kind, &item.body); err != nil {
			return nil, 0, fmt.Errorf("read the queue of appservice %s: %w", asID, err)
		}
		took, err := b.add(item)
		if errors.Is(err, errBadItem) {
			// One unreadable row must not stall the queue: it goes with
			// the transaction, left out of it.
			q.metrics.skipped.WithLabelValues(asID, item.kind).Inc()
			q.log.Error("appservice queue: an unreadable item is left out of the transaction", "appservice", asID, "err", err)
			b.skip()
			lastRow = item.rowID
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if !took {
			break
		}
		lastRow = item.rowID
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read the queue of appservice %s: %w", asID, err)
	}
	return b, lastRow, nil
}

// deliver sends txn until the appservice accepts it, waiting out the
// backoff between tries. It reports false when the queue stops first or
// the appservice is gone (or lost its url); the transaction stays stored
// for when it is back.
func (q *Queue) deliver(ctx context.Context, t *target, txn *pendingTxn) bool {
	for {
		if !q.waitRetry(ctx, t) {
			return false
		}
		reg := q.registry.ByID(t.id)
		if reg == nil || reg.URL == "" || q.registry.Paused(t.id) {
			return false
		}
		err := putTransaction(ctx, q.client, reg.URL, reg.HSToken, txn)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			if err := q.acknowledged(ctx, t, txn); err != nil {
				q.log.Warn("appservice queue", "appservice", t.id, "err", err)
				return sleep(ctx, q.timing().minBackoff)
			}
			return true
		}
		q.failed(ctx, t, err)
	}
}

// waitRetry waits until t's backoff is over (or Wake ends it).
func (q *Queue) waitRetry(ctx context.Context, t *target) bool {
	for {
		q.mu.Lock()
		wait := time.Until(t.retryAt)
		q.mu.Unlock()
		if wait <= 0 {
			return true
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-t.wake:
		case <-ctx.Done():
			timer.Stop()
			return false
		}
		timer.Stop()
	}
}

// Wake retries the appservice now if it is waiting out a backoff (the
// appservice said it is back, as a ping does).
func (q *Queue) Wake(asID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targets[asID]
	if t == nil || t.failures == 0 {
		return
	}
	t.retryAt = time.Time{}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// acknowledged forgets an accepted transaction and records the success.
func (q *Queue) acknowledged(ctx context.Context, t *target, txn *pendingTxn) error {
	now := time.Now()
	return q.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE appservice_state SET txn_id = '', txn_body = '', txn_items = 0, failures = 0, retry_at_ts = 0, failure_ts = 0, last_success_ts = $1
WHERE appservice_id = $2 AND txn_id = $3`, millis(now), t.id, txn.id); err != nil {
			return fmt.Errorf("record transaction %s of appservice %s as sent: %w", txn.id, t.id, err)
		}
		tx.AfterCommit(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			t.depth = max(t.depth-txn.items, 0)
			if t.full && t.depth < q.maxQueued {
				t.full = false
				q.log.Info("appservice queue below its limit again: new items are queued", "appservice", t.id)
			}
			t.failures, t.retryAt, t.failedAt, t.lastSuccess = 0, time.Time{}, time.Time{}, now
			q.metrics.observe(t)
		})
		return nil
	})
}

// backoffLocked is the wait after failures failed transactions in a row.
// q.mu is held.
func (q *Queue) backoffLocked(failures int) time.Duration {
	d := q.minBackoff
	for i := 1; i < failures && d < q.maxBackoff; i++ {
		d *= 2
	}
	return min(d, q.maxBackoff)
}

// failed records a failed transaction and sets t's backoff.
func (q *Queue) failed(ctx context.Context, t *target, sendErr error) {
	now := time.Now()
	q.mu.Lock()
	t.failures++
	t.failedAt = now
	t.retryAt = now.Add(q.backoffLocked(t.failures))
	failures, retryAt := t.failures, t.retryAt
	q.metrics.failures.WithLabelValues(t.id).Inc()
	q.metrics.observe(t)
	q.mu.Unlock()
	level := slog.LevelDebug
	if failures == 1 || failures%10 == 0 {
		level = slog.LevelWarn
	}
	q.log.Log(ctx, level, "appservice transaction failed", "appservice", t.id, "failures", failures, "retry_at", retryAt, "err", sendErr)
	err := q.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE appservice_state SET failures = $1, retry_at_ts = $2, failure_ts = $3 WHERE appservice_id = $4`,
			failures, millis(retryAt), millis(now), t.id)
		return err
	})
	if err != nil && ctx.Err() == nil {
		q.log.Warn("appservice queue: record failure", "appservice", t.id, "err", err)
	}
}

// Status is what the queue knows of one appservice.
type Status struct {
	ID          string
	QueueDepth  int
	Failures    int
	RetryAt     time.Time // zero when not backing off
	LastSuccess time.Time
}

// Status returns what the queue knows of the appservice (zero values for
// one it never queued for).
func (q *Queue) Status(asID string) Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Status{ID: asID}
	if t := q.targets[asID]; t != nil {
		s.QueueDepth, s.Failures, s.RetryAt, s.LastSuccess = t.depth, t.failures, t.retryAt, t.lastSuccess
	}
	return s
}
