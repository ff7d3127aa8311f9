package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/storage"
)

// Limits of one outbound transaction, the spec's.
const (
	MaxTxnPDUs = 50
	MaxTxnEDUs = 100
)

// Outbox timing: how long a destination's worker gathers what is queued
// before it sends, and the backoff after a failed transaction.
const (
	BatchDelay = 100 * time.Millisecond
	MinBackoff = 2 * time.Second
	MaxBackoff = time.Hour
	// DownAfter is the number of failed transactions in a row after which
	// a destination counts as down (it is still retried at MaxBackoff, and
	// at once when it contacts us: see Wake).
	DownAfter = 6
	// txnTimeout bounds one outbound transaction.
	txnTimeout = 60 * time.Second
	// MaxQueuedPDUs bounds the PDUs queued for a destination that fails:
	// past it the oldest are dropped, and the destination, given the
	// newest events of each room, fetches what it misses with
	// get_missing_events (catch-up). EDUs are never dropped.
	MaxQueuedPDUs = 10000
)

// Outbox is this node's outbound federation queue: PDUs and EDUs for other
// servers, kept in the database (so they survive a restart or kill -9)
// until the destination accepts the transaction that carries them.
//
// Each destination has its own worker, started when something is queued
// for it, with at most one transaction in flight: it gathers what is
// queued for BatchDelay, sends up to MaxTxnPDUs PDUs and MaxTxnEDUs EDUs
// in queue order, and retries the same transaction (same ID) with
// exponential backoff until it is accepted. One destination's failure
// never delays another's.
type Outbox struct {
	db      *storage.DB
	log     *slog.Logger
	origin  string
	send    sendFunc
	metrics *outboxMetrics

	// Timing; tests shorten them before Start.
	batchDelay, minBackoff, maxBackoff time.Duration
	// maxQueuedPDUs is MaxQueuedPDUs; tests lower it. Guarded by mu.
	maxQueuedPDUs int

	txnPrefix string
	txnSeq    atomic.Int64

	mu      sync.Mutex
	dests   map[string]*destination
	ctx     context.Context // nil until Start
	stop    context.CancelFunc
	workers sync.WaitGroup
}

// sendFunc sends one transaction (federation.Client.SendTransaction).
type sendFunc func(ctx context.Context, req *federation.ReqSendTransaction) (*federation.RespSendTransaction, error)

// destination is the outbox's view of one server it queues for.
type destination struct {
	name string
	wake chan struct{} // Wake's signal to a worker waiting out a backoff

	// Guarded by Outbox.mu.
	running     bool // a worker serves it
	pending     bool // something was queued since the worker last looked
	depth       int  // queued PDUs and EDUs
	failures    int  // failed transactions in a row
	retryAt     time.Time
	failedAt    time.Time
	lastSuccess time.Time
}

// backoff is the wait after failures failed transactions in a row.
func (o *Outbox) backoff(failures int) time.Duration {
	d := o.minBackoff
	for i := 1; i < failures && d < o.maxBackoff; i++ {
		d *= 2
	}
	return min(d, o.maxBackoff)
}

func newOutbox(db *storage.DB, log *slog.Logger, origin string, send sendFunc) *Outbox {
	return &Outbox{
		db: db, log: log, origin: origin, send: send, metrics: newOutboxMetrics(),
		batchDelay: BatchDelay, minBackoff: MinBackoff, maxBackoff: MaxBackoff, maxQueuedPDUs: MaxQueuedPDUs,
		txnPrefix: strconv.FormatInt(time.Now().UnixMilli(), 36),
		dests:     map[string]*destination{},
	}
}

// Start loads what is queued and each destination's backoff, and starts
// delivering. Stop ends delivery; what is queued stays for the next Start.
func (o *Outbox) Start(ctx context.Context) error {
	if err := o.load(ctx); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ctx, o.stop = context.WithCancel(context.WithoutCancel(ctx))
	for _, d := range o.dests {
		if d.depth > 0 || d.pending {
			o.startLocked(d)
		}
	}
	return nil
}

// Stop ends every worker and waits for them. A transaction in flight is
// abandoned; its events stay queued.
func (o *Outbox) Stop() {
	o.mu.Lock()
	stop := o.stop
	o.mu.Unlock()
	if stop != nil {
		stop()
	}
	o.workers.Wait()
}

// load reads the queue depth and backoff of every destination.
func (o *Outbox) load(ctx context.Context) error {
	rows, err := o.db.Query(ctx, `SELECT destination, COUNT(*) FROM federation_outbound GROUP BY destination`)
	if err != nil {
		return fmt.Errorf("load outbound queue: %w", err)
	}
	depths := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			rows.Close()
			return fmt.Errorf("load outbound queue: %w", err)
		}
		depths[name] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load outbound queue: %w", err)
	}
	rows, err = o.db.Query(ctx, `SELECT destination, failures, retry_at_ts, failure_ts, last_success_ts FROM federation_destinations`)
	if err != nil {
		return fmt.Errorf("load destinations: %w", err)
	}
	defer rows.Close()
	o.mu.Lock()
	defer o.mu.Unlock()
	for rows.Next() {
		var name string
		var failures int
		var retryAt, failedAt, lastSuccess int64
		if err := rows.Scan(&name, &failures, &retryAt, &failedAt, &lastSuccess); err != nil {
			return fmt.Errorf("load destinations: %w", err)
		}
		d := o.destLocked(name)
		d.failures, d.retryAt, d.failedAt, d.lastSuccess = failures, fromMillis(retryAt), fromMillis(failedAt), fromMillis(lastSuccess)
		o.metrics.observe(d)
	}
	for name, n := range depths {
		d := o.destLocked(name)
		d.depth = n
		o.metrics.observe(d)
	}
	return rows.Err()
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

// destLocked returns the destination, creating it. o.mu is held.
func (o *Outbox) destLocked(name string) *destination {
	d := o.dests[name]
	if d == nil {
		d = &destination{name: name, wake: make(chan struct{}, 1)}
		o.dests[name] = d
	}
	return d
}

// startLocked starts d's worker unless it runs or the outbox has not
// started. o.mu is held.
func (o *Outbox) startLocked(d *destination) {
	if d.running || o.ctx == nil || o.ctx.Err() != nil {
		return
	}
	d.running = true
	o.workers.Add(1)
	go o.run(d)
}

// queued tells the destinations' workers that rows were committed for
// them (n each).
func (o *Outbox) queued(destinations []string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, name := range destinations {
		d := o.destLocked(name)
		d.pending = true
		d.depth += n
		o.metrics.observe(d)
		o.startLocked(d)
	}
}

// Wake tells the outbox that destination contacted us: a destination
// waiting out a backoff (or marked down) is retried now.
func (o *Outbox) Wake(destination string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := o.dests[destination]
	if d == nil || d.failures == 0 {
		return
	}
	d.retryAt = time.Time{}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// destinations returns the servers an event or EDU goes to: valid server
// names other than this one, each once.
func (o *Outbox) destinations(names []string) []string {
	out := make([]string, 0, len(names))
	seen := map[string]bool{o.origin: true}
	for _, n := range names {
		if seen[n] || config.ValidServerName(n) != nil {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

// SendPDU queues a PDU for the destinations (this server and invalid names
// are left out) and returns once it is stored.
func (o *Outbox) SendPDU(ctx context.Context, destinations []string, raw json.RawMessage) error {
	return o.db.Write(ctx, func(tx *storage.Tx) error { return o.QueuePDU(ctx, tx, destinations, raw) })
}

// QueuePDU queues a PDU for the destinations inside tx, so that it is sent
// if and only if tx commits (an OnPersist hook queues an event in the
// transaction that stores it).
func (o *Outbox) QueuePDU(ctx context.Context, tx *storage.Tx, destinations []string, raw json.RawMessage) error {
	dests := o.destinations(destinations)
	if len(dests) == 0 {
		return nil
	}
	var pduID int64
	if err := tx.QueryRow(ctx, `INSERT INTO federation_outbound_pdus (body) VALUES ($1) RETURNING id`, string(raw)).Scan(&pduID); err != nil {
		return fmt.Errorf("queue PDU: %w", err)
	}
	for _, d := range dests {
		if _, err := tx.Exec(ctx, `INSERT INTO federation_outbound (destination, pdu_id, edu_type, edu_key, edu_content) VALUES ($1, $2, '', '', '')`, d, pduID); err != nil {
			return fmt.Errorf("queue PDU for %s: %w", d, err)
		}
	}
	tx.AfterCommit(func() { o.queued(dests, 1) })
	return nil
}

// SendEDU queues an EDU for a destination and returns once it is stored.
func (o *Outbox) SendEDU(ctx context.Context, destination, eduType string, content any) error {
	return o.SendEDUCoalesced(ctx, destination, eduType, "", content)
}

// SendEDUCoalesced queues an EDU like SendEDU, replacing the EDU of the
// same type and key queued for the destination and not sent yet (typing
// per room and user, receipts per room, user and thread, presence per
// user). An empty key replaces nothing.
func (o *Outbox) SendEDUCoalesced(ctx context.Context, destination, eduType, key string, content any) error {
	dests := o.destinations([]string{destination})
	if len(dests) == 0 || eduType == "" {
		return nil
	}
	body, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("queue %s EDU: %w", eduType, err)
	}
	return o.db.Write(ctx, func(tx *storage.Tx) error {
		replaced := int64(0)
		if key != "" {
			res, err := tx.Exec(ctx, `DELETE FROM federation_outbound WHERE destination = $1 AND pdu_id = 0 AND edu_type = $2 AND edu_key = $3`, destination, eduType, key)
			if err != nil {
				return fmt.Errorf("coalesce %s EDU: %w", eduType, err)
			}
			replaced, _ = res.RowsAffected()
		}
		if _, err := tx.Exec(ctx, `INSERT INTO federation_outbound (destination, pdu_id, edu_type, edu_key, edu_content) VALUES ($1, 0, $2, $3, $4)`,
			destination, eduType, key, string(body)); err != nil {
			return fmt.Errorf("queue %s EDU for %s: %w", eduType, destination, err)
		}
		tx.AfterCommit(func() { o.queued(dests, 1-int(replaced)) })
		return nil
	})
}

// batch is one transaction's worth of queued rows.
type batch struct {
	txnID  string
	rowIDs []int64
	pduIDs []int64
	pdus   []json.RawMessage
	edus   []json.RawMessage
}

func (b *batch) empty() bool { return len(b.rowIDs) == 0 }
func (b *batch) full() bool  { return len(b.pdus) == MaxTxnPDUs || len(b.edus) == MaxTxnEDUs }

// nextBatch reads the oldest queued PDUs and EDUs of a destination.
func (o *Outbox) nextBatch(ctx context.Context, dest string) (*batch, error) {
	b := &batch{txnID: o.txnPrefix + "." + strconv.FormatInt(o.txnSeq.Add(1), 10), pdus: []json.RawMessage{}}
	rows, err := o.db.Query(ctx, `SELECT q.id, q.pdu_id, p.body FROM federation_outbound q JOIN federation_outbound_pdus p ON p.id = q.pdu_id
WHERE q.destination = $1 AND q.pdu_id <> 0 ORDER BY q.id LIMIT $2`, dest, MaxTxnPDUs)
	if err != nil {
		return nil, fmt.Errorf("read queued PDUs for %s: %w", dest, err)
	}
	for rows.Next() {
		var rowID, pduID int64
		var body string
		if err := rows.Scan(&rowID, &pduID, &body); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read queued PDUs for %s: %w", dest, err)
		}
		b.rowIDs, b.pduIDs, b.pdus = append(b.rowIDs, rowID), append(b.pduIDs, pduID), append(b.pdus, json.RawMessage(body))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read queued PDUs for %s: %w", dest, err)
	}
	rows, err = o.db.Query(ctx, `SELECT id, edu_type, edu_content FROM federation_outbound WHERE destination = $1 AND pdu_id = 0 ORDER BY id LIMIT $2`, dest, MaxTxnEDUs)
	if err != nil {
		return nil, fmt.Errorf("read queued EDUs for %s: %w", dest, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rowID int64
		var eduType, content string
		if err := rows.Scan(&rowID, &eduType, &content); err != nil {
			return nil, fmt.Errorf("read queued EDUs for %s: %w", dest, err)
		}
		edu, err := json.Marshal(struct {
			Type    string          `json:"edu_type"`
			Content json.RawMessage `json:"content"`
		}{eduType, json.RawMessage(content)})
		if err != nil {
			return nil, fmt.Errorf("build %s EDU: %w", eduType, err)
		}
		b.rowIDs, b.edus = append(b.rowIDs, rowID), append(b.edus, edu)
	}
	return b, rows.Err()
}

// run is a destination's worker: it sends what is queued, one transaction
// at a time, and returns when the queue is empty or the outbox stops.
func (o *Outbox) run(d *destination) {
	defer o.workers.Done()
	ctx := o.ctx
	gather := true
	for {
		if gather && !sleep(ctx, o.batchDelay) {
			break
		}
		o.mu.Lock()
		d.pending = false
		o.mu.Unlock()
		b, err := o.nextBatch(ctx, d.name)
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("federation outbox", "destination", d.name, "err", err)
				sleep(ctx, o.minBackoff)
			}
			continue
		}
		if b.empty() {
			o.mu.Lock()
			if d.pending && ctx.Err() == nil {
				o.mu.Unlock()
				gather = true
				continue
			}
			d.running = false
			o.mu.Unlock()
			return
		}
		if !o.deliver(ctx, d, b) {
			break
		}
		gather = !b.full()
	}
	o.mu.Lock()
	d.running = false
	o.mu.Unlock()
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

// deliver sends b until the destination accepts it (or refuses it for
// good), waiting out the backoff between tries. It reports false when the
// outbox stops first.
func (o *Outbox) deliver(ctx context.Context, d *destination, b *batch) bool {
	for {
		if !o.waitRetry(ctx, d) {
			return false
		}
		err := o.sendBatch(ctx, d.name, b)
		if ctx.Err() != nil {
			return false
		}
		if err == nil || permanent(err) {
			if err != nil {
				o.log.Warn("federation transaction refused for good; its events are dropped for this destination",
					"destination", d.name, "txn_id", b.txnID, "pdus", len(b.pdus), "edus", len(b.edus), "err", err)
			}
			if err := o.delivered(ctx, d, b, err == nil); err != nil {
				o.log.Warn("federation outbox", "destination", d.name, "err", err)
				return sleep(ctx, o.minBackoff)
			}
			return true
		}
		o.failed(ctx, d, err)
		if o.trim(ctx, d) {
			// The batch may have lost PDUs: the next one is read afresh.
			return true
		}
	}
}

// trim drops the oldest PDUs queued for d beyond maxQueuedPDUs, and
// reports whether it dropped any.
func (o *Outbox) trim(ctx context.Context, d *destination) bool {
	o.mu.Lock()
	limit, depth := o.maxQueuedPDUs, d.depth
	o.mu.Unlock()
	if depth <= limit {
		return false
	}
	var dropped int64
	err := o.db.Write(ctx, func(tx *storage.Tx) error {
		var cutoff int64
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id FROM federation_outbound WHERE destination = $1 AND pdu_id <> 0 ORDER BY id DESC LIMIT 1 OFFSET %d`, limit), d.name).Scan(&cutoff)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find the PDUs to drop for %s: %w", d.name, err)
		}
		res, err := tx.Exec(ctx, `DELETE FROM federation_outbound WHERE destination = $1 AND pdu_id <> 0 AND id <= $2`, d.name, cutoff)
		if err != nil {
			return fmt.Errorf("drop PDUs queued for %s: %w", d.name, err)
		}
		dropped, _ = res.RowsAffected()
		if _, err := tx.Exec(ctx, `DELETE FROM federation_outbound_pdus WHERE NOT EXISTS (SELECT 1 FROM federation_outbound q WHERE q.pdu_id = federation_outbound_pdus.id)`); err != nil {
			return fmt.Errorf("drop unqueued PDUs: %w", err)
		}
		var left int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM federation_outbound WHERE destination = $1`, d.name).Scan(&left); err != nil {
			return fmt.Errorf("count queue of %s: %w", d.name, err)
		}
		tx.AfterCommit(func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			d.depth = left
			o.metrics.observe(d)
		})
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("federation outbox", "destination", d.name, "err", err)
		}
		return false
	}
	if dropped > 0 {
		o.log.Warn("federation: dropped the oldest PDUs queued for a failing destination; it catches up from the newest", "destination", d.name, "dropped", dropped)
	}
	return dropped > 0
}

// waitRetry waits until d's backoff is over (or Wake ends it).
func (o *Outbox) waitRetry(ctx context.Context, d *destination) bool {
	for {
		o.mu.Lock()
		wait := time.Until(d.retryAt)
		o.mu.Unlock()
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.wake:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
	}
}

// sendBatch sends one transaction.
func (o *Outbox) sendBatch(ctx context.Context, dest string, b *batch) error {
	ctx, cancel := context.WithTimeout(ctx, txnTimeout)
	defer cancel()
	resp, err := o.send(ctx, &federation.ReqSendTransaction{
		Destination: dest, TxnID: b.txnID, Origin: o.origin,
		OriginServerTS: jsontime.UM(time.Now()), PDUs: b.pdus, EDUs: b.edus,
	})
	if err != nil {
		return err
	}
	if resp != nil {
		for evID, r := range resp.PDUs {
			if r.Error != "" {
				o.log.Debug("federation: destination refused an event", "destination", dest, "event_id", evID, "error", r.Error)
			}
		}
	}
	return nil
}

// permanent reports whether a failed transaction would fail again however
// often it is retried: the destination answered that the request itself
// is bad (400, 413). Other failures (unreachable, 5xx, 401 while keys
// propagate, 429) are retried.
func permanent(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		switch httpErr.Response.StatusCode {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return true
		}
	}
	return false
}

// delivered removes a sent batch from the queue and records the success.
// The queue depth is counted in the same write, and set once it commits:
// the writer commits in order, so the count and the increments of
// queued (also run after commits) apply in the order of the writes.
func (o *Outbox) delivered(ctx context.Context, d *destination, b *batch, ok bool) error {
	now := time.Now()
	return o.db.Write(ctx, func(tx *storage.Tx) error {
		for _, rowID := range b.rowIDs {
			if _, err := tx.Exec(ctx, `DELETE FROM federation_outbound WHERE id = $1`, rowID); err != nil {
				return fmt.Errorf("remove sent row: %w", err)
			}
		}
		for _, pduID := range b.pduIDs {
			if _, err := tx.Exec(ctx, `DELETE FROM federation_outbound_pdus WHERE id = $1
AND NOT EXISTS (SELECT 1 FROM federation_outbound q WHERE q.pdu_id = $1)`, pduID); err != nil {
				return fmt.Errorf("remove sent PDU: %w", err)
			}
		}
		var depth int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM federation_outbound WHERE destination = $1`, d.name).Scan(&depth); err != nil {
			return fmt.Errorf("count queue of %s: %w", d.name, err)
		}
		if ok {
			if err := saveDestination(ctx, tx, d.name, 0, time.Time{}, time.Time{}, now); err != nil {
				return err
			}
		}
		tx.AfterCommit(func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			d.depth = depth
			if ok {
				d.failures, d.retryAt, d.failedAt, d.lastSuccess = 0, time.Time{}, time.Time{}, now
			}
			o.metrics.observe(d)
		})
		return nil
	})
}

// failed records a failed transaction and sets d's backoff.
func (o *Outbox) failed(ctx context.Context, d *destination, sendErr error) {
	now := time.Now()
	o.mu.Lock()
	d.failures++
	d.failedAt = now
	d.retryAt = now.Add(o.backoff(d.failures))
	failures, retryAt, lastSuccess := d.failures, d.retryAt, d.lastSuccess
	o.metrics.observe(d)
	o.mu.Unlock()
	level := slog.LevelDebug
	if failures == DownAfter {
		level = slog.LevelWarn
	}
	o.log.Log(ctx, level, "federation transaction failed", "destination", d.name, "failures", failures, "retry_at", retryAt, "err", sendErr)
	err := o.db.Write(ctx, func(tx *storage.Tx) error {
		return saveDestination(ctx, tx, d.name, failures, retryAt, now, lastSuccess)
	})
	if err != nil && ctx.Err() == nil {
		o.log.Warn("federation outbox: record failure", "destination", d.name, "err", err)
	}
}

func saveDestination(ctx context.Context, tx *storage.Tx, name string, failures int, retryAt, failedAt, lastSuccess time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO federation_destinations (destination, failures, retry_at_ts, failure_ts, last_success_ts) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, retry_at_ts = excluded.retry_at_ts,
	failure_ts = excluded.failure_ts, last_success_ts = excluded.last_success_ts`,
		name, failures, millis(retryAt), millis(failedAt), millis(lastSuccess))
	if err != nil {
		return fmt.Errorf("record destination %s: %w", name, err)
	}
	return nil
}

// DestinationStatus is what the outbox knows of one destination.
type DestinationStatus struct {
	Destination string
	QueueDepth  int
	Failures    int
	Down        bool
	RetryAt     time.Time // zero when not backing off
	FailedAt    time.Time // the last failure, zero after a success
	LastSuccess time.Time
}

// Destinations lists every destination the outbox has queued for, by
// name.
func (o *Outbox) Destinations() []DestinationStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]DestinationStatus, 0, len(o.dests))
	for _, d := range o.dests {
		out = append(out, d.status())
	}
	slices.SortFunc(out, func(a, b DestinationStatus) int { return strings.Compare(a.Destination, b.Destination) })
	return out
}

func (d *destination) status() DestinationStatus {
	return DestinationStatus{
		Destination: d.name, QueueDepth: d.depth, Failures: d.failures, Down: d.failures >= DownAfter,
		RetryAt: d.retryAt, FailedAt: d.failedAt, LastSuccess: d.lastSuccess,
	}
}

// ResetBackoff forgets a destination's failures and retries it now; ok is
// false for a destination the outbox does not know.
func (o *Outbox) ResetBackoff(ctx context.Context, destination string) (ok bool, err error) {
	o.mu.Lock()
	d := o.dests[destination]
	if d == nil {
		o.mu.Unlock()
		return false, nil
	}
	d.failures, d.retryAt, d.failedAt = 0, time.Time{}, time.Time{}
	lastSuccess := d.lastSuccess
	o.metrics.observe(d)
	select {
	case d.wake <- struct{}{}:
	default:
	}
	o.mu.Unlock()
	return true, o.db.Write(ctx, func(tx *storage.Tx) error {
		return saveDestination(ctx, tx, destination, 0, time.Time{}, time.Time{}, lastSuccess)
	})
}
