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

// Outbox timing: how long a busy destination's worker gathers what is
// queued before it sends the next transaction (an idle destination's first
// is sent at once), and the backoff after a failed transaction.
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
	// get_missing_events (catch-up).
	MaxQueuedPDUs = 10000
	// MaxQueuedEphemeralEDUs bounds the typing notifications, receipts
	// and presence updates queued for a destination: past it the oldest
	// are dropped (newer ones say what matters now).
	MaxQueuedEphemeralEDUs = 1000
	// MaxQueuedDurableEDUs bounds the other EDUs (to-device messages,
	// device list and signing key updates) queued for a destination; it
	// is generous, so that only a destination gone for long loses any,
	// and each drop is logged and counted.
	MaxQueuedDurableEDUs = 100000
)

// rowClass sorts the queued rows by what bounds them.
type rowClass int

const (
	classPDU       rowClass = iota
	classEphemeral          // m.typing, m.receipt, m.presence
	classDurable            // every other EDU
	numClasses
)

// ephemeralEDUs are the EDU types of classEphemeral.
var ephemeralEDUs = []string{"m.typing", "m.receipt", "m.presence"}

func classOf(pduID int64, eduType string) rowClass {
	switch {
	case pduID != 0:
		return classPDU
	case slices.Contains(ephemeralEDUs, eduType):
		return classEphemeral
	}
	return classDurable
}

func (c rowClass) String() string {
	return [...]string{"pdu", "ephemeral", "durable"}[c]
}

// Outbox is this node's outbound federation queue: PDUs and EDUs for other
// servers, kept in the database (so they survive a restart or kill -9)
// until the destination accepts the transaction that carries them.
//
// Each destination has its own worker, started when something is queued
// for it, with at most one transaction in flight: it sends at once what
// is queued when it starts, and after that gathers for BatchDelay, sends up to MaxTxnPDUs PDUs and MaxTxnEDUs EDUs
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
	// maxQueued is, by class, MaxQueuedPDUs, MaxQueuedEphemeralEDUs and
	// MaxQueuedDurableEDUs; tests lower them. Guarded by mu.
	maxQueued [numClasses]int

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
	name  string
	wake  chan struct{} // Wake's signal to a worker waiting out a backoff
	hurry chan struct{} // Flush's signal to a worker gathering a batch

	// Guarded by Outbox.mu.
	running     bool            // a worker serves it
	pending     bool            // something was queued since the worker last looked
	queued      [numClasses]int // rows queued, by class
	drops       int             // times rows were dropped past a bound: a batch read before is stale
	failures    int             // failed transactions in a row
	retryAt     time.Time
	failedAt    time.Time
	lastSuccess time.Time
	// flushed is closed, and cleared, once no PDU is queued for d or its
	// worker stops: Flush waits on it.
	flushed chan struct{}
}

// depth is the number of PDUs and EDUs queued for d.
func (d *destination) depth() int {
	n := 0
	for _, q := range d.queued {
		n += q
	}
	return n
}

// count adds n rows of class c to d's queue (n < 0 removes them). The
// outbox's mutex is held.
func (d *destination) count(c rowClass, n int) {
	d.queued[c] = max(d.queued[c]+n, 0)
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
		batchDelay: BatchDelay, minBackoff: MinBackoff, maxBackoff: MaxBackoff,
		maxQueued: [numClasses]int{MaxQueuedPDUs, MaxQueuedEphemeralEDUs, MaxQueuedDurableEDUs},
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
		if d.depth() > 0 || d.pending {
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
	rows, err := o.db.Query(ctx, `SELECT destination, MIN(pdu_id), edu_type, COUNT(*) FROM federation_outbound
GROUP BY destination, pdu_id = 0, edu_type`)
	if err != nil {
		return fmt.Errorf("load outbound queue: %w", err)
	}
	depths := map[string]*[numClasses]int{}
	for rows.Next() {
		var name, eduType string
		var pduID int64
		var n int
		if err := rows.Scan(&name, &pduID, &eduType, &n); err != nil {
			rows.Close()
			return fmt.Errorf("load outbound queue: %w", err)
		}
		if depths[name] == nil {
			depths[name] = &[numClasses]int{}
		}
		depths[name][classOf(pduID, eduType)] += n
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
		d.queued = *n
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
		d = &destination{name: name, wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1)}
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
// them (n each, of class c).
func (o *Outbox) queued(destinations []string, c rowClass, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, name := range destinations {
		d := o.destLocked(name)
		d.pending = true
		d.count(c, n)
		o.metrics.observe(d)
		o.startLocked(d)
	}
}

// flushTimeout bounds Flush's wait.
const flushTimeout = 5 * time.Second

// Flush sends what is queued for destination now, without the batch
// delay, and returns once no PDU is queued for it (or after flushTimeout,
// or at once when the destination is backing off: it is failing, and the
// caller is about to learn that itself). A request made to a server
// directly (make_join, send_join, ...) uses it first, so that it does not
// overtake the events this node sent it before: a user who left a room
// and joins it again must not ask the resident server for a join while
// that server still holds them joined.
func (o *Outbox) Flush(ctx context.Context, destination string) {
	o.mu.Lock()
	d := o.dests[destination]
	if d == nil || d.queued[classPDU] == 0 || !d.running || d.failures > 0 {
		o.mu.Unlock()
		return
	}
	if d.flushed == nil {
		d.flushed = make(chan struct{})
	}
	flushed := d.flushed
	o.mu.Unlock()
	select {
	case d.hurry <- struct{}{}:
	default:
	}
	t := time.NewTimer(flushTimeout)
	defer t.Stop()
	select {
	case <-flushed:
	case <-t.C:
	case <-ctx.Done():
	}
}

// flushedLocked wakes the Flush calls waiting on d. o.mu is held.
func (d *destination) flushedLocked() {
	if d.flushed != nil {
		close(d.flushed)
		d.flushed = nil
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
	for part := range slices.Chunk(dests, maxRowsPerInsert) {
		query, args := queuePDURows(pduID, part)
		if _, err := tx.Exec(ctx, query, args...); err != nil {
			return fmt.Errorf("queue PDU for %d destinations: %w", len(part), err)
		}
	}
	tx.AfterCommit(func() { o.queued(dests, classPDU, 1) })
	return nil
}

// maxRowsPerInsert bounds the rows of one INSERT (and so its parameters).
const maxRowsPerInsert = 500

// queuePDURows is the one INSERT that queues PDU pduID for dests.
func queuePDURows(pduID int64, dests []string) (string, []any) {
	var b strings.Builder
	b.WriteString(`INSERT INTO federation_outbound (destination, pdu_id, edu_type, edu_key, edu_content) VALUES `)
	args := make([]any, 0, len(dests)+1)
	args = append(args, pduID)
	for i, d := range dests {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d, $1, '', '', '')", i+2)
		args = append(args, d)
	}
	return b.String(), args
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
	class := classOf(0, eduType)
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
		dropped, err := o.boundEDUs(ctx, tx, destination, class, 1-int(replaced))
		if err != nil {
			return err
		}
		tx.AfterCommit(func() {
			o.queued(dests, class, 1-int(replaced)-dropped)
			o.droppedEDUs(destination, class, dropped)
		})
		return nil
	})
}

// boundEDUs drops the oldest EDUs of class queued for dest beyond the
// class's bound, once a write that adds added of them would pass it. It
// returns how many it dropped.
func (o *Outbox) boundEDUs(ctx context.Context, tx *storage.Tx, dest string, class rowClass, added int) (int, error) {
	o.mu.Lock()
	limit, queued := o.maxQueued[class], o.destLocked(dest).queued[class]
	o.mu.Unlock()
	if queued+added <= limit {
		return 0, nil
	}
	inClass := "edu_type IN ('" + strings.Join(ephemeralEDUs, "', '") + "')"
	if class == classDurable {
		inClass = "NOT " + inClass
	}
	var cutoff int64
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT id FROM federation_outbound WHERE destination = $1 AND pdu_id = 0 AND %s
ORDER BY id DESC LIMIT 1 OFFSET %d`, inClass, limit), dest).Scan(&cutoff)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find the EDUs to drop for %s: %w", dest, err)
	}
	res, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM federation_outbound WHERE destination = $1 AND pdu_id = 0 AND %s AND id <= $2`, inClass), dest, cutoff)
	if err != nil {
		return 0, fmt.Errorf("drop EDUs queued for %s: %w", dest, err)
	}
	dropped, _ := res.RowsAffected()
	return int(dropped), nil
}

// droppedEDUs counts and logs EDUs dropped from dest's queue; durable
// ones are logged as a warning, since their loss shows.
func (o *Outbox) droppedEDUs(dest string, class rowClass, n int) {
	if n <= 0 {
		return
	}
	o.mu.Lock()
	o.destLocked(dest).drops++
	o.mu.Unlock()
	o.metrics.droppedEDUs.WithLabelValues(class.String()).Add(float64(n))
	level := slog.LevelDebug
	if class == classDurable {
		level = slog.LevelWarn
	}
	o.log.Log(context.Background(), level, "federation: dropped the oldest EDUs queued for a destination past the queue's bound",
		"destination", dest, "class", class.String(), "dropped", n)
}

// batch is one transaction's worth of queued rows.
type batch struct {
	txnID    string
	rowIDs   []int64
	classes  []rowClass // of each row
	pduIDs   []int64
	pdus     []json.RawMessage
	edus     []json.RawMessage
	eduTypes []string
}

func (b *batch) empty() bool { return len(b.rowIDs) == 0 }
func (b *batch) full() bool  { return len(b.pdus) == MaxTxnPDUs || len(b.edus) == MaxTxnEDUs }

func (o *Outbox) newTxnID() string {
	return o.txnPrefix + "." + strconv.FormatInt(o.txnSeq.Add(1), 10)
}

// split parts a batch into its PDUs and its EDUs, each a transaction of
// its own (the EDUs' with a new ID).
func (o *Outbox) split(b *batch) (pdus, edus *batch) {
	pdus = &batch{txnID: b.txnID, pduIDs: b.pduIDs, pdus: b.pdus}
	edus = &batch{txnID: o.newTxnID(), pdus: []json.RawMessage{}, edus: b.edus, eduTypes: b.eduTypes}
	for i, rowID := range b.rowIDs {
		part := edus
		if b.classes[i] == classPDU {
			part = pdus
		}
		part.rowIDs, part.classes = append(part.rowIDs, rowID), append(part.classes, b.classes[i])
	}
	return pdus, edus
}

// nextBatch reads the oldest queued PDUs and EDUs of a destination.
func (o *Outbox) nextBatch(ctx context.Context, dest string) (*batch, error) {
	b := &batch{txnID: o.newTxnID(), pdus: []json.RawMessage{}}
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
		b.rowIDs, b.classes = append(b.rowIDs, rowID), append(b.classes, classPDU)
		b.pduIDs, b.pdus = append(b.pduIDs, pduID), append(b.pdus, json.RawMessage(body))
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
		b.rowIDs, b.classes = append(b.rowIDs, rowID), append(b.classes, classOf(0, eduType))
		b.edus, b.eduTypes = append(b.edus, edu), append(b.eduTypes, eduType)
	}
	return b, rows.Err()
}

// run is a destination's worker: it sends what is queued, one transaction
// at a time, and returns when the queue is empty or the outbox stops.
func (o *Outbox) run(d *destination) {
	defer o.workers.Done()
	ctx := o.ctx
	// A destination that was idle gets its first transaction at once:
	// gathering only pays while transactions follow each other, and a
	// first event held back lets a later one on another path overtake it
	// (a join authorised before the power levels that allow it arrive).
	gather := false
	for {
		if gather && !o.gather(ctx, d) {
			break
		}
		o.mu.Lock()
		d.pending = false
		o.mu.Unlock()
		b, err := o.nextBatch(ctx, d.name)
		if err != nil {
			if ctx.Err() != nil {
				break // the outbox stops
			}
			o.log.Warn("federation outbox", "destination", d.name, "err", err)
			if !sleep(ctx, o.minBackoff) {
				break
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
			d.flushedLocked()
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
	d.flushedLocked()
	o.mu.Unlock()
}

// gather waits the batch delay, so that what is queued meanwhile goes in
// one transaction, unless Flush hurries d; it reports whether the outbox
// still runs.
func (o *Outbox) gather(ctx context.Context, d *destination) bool {
	o.mu.Lock()
	delay := o.batchDelay
	o.mu.Unlock()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-d.hurry:
	case <-ctx.Done():
		return false
	}
	return true
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
	drops := o.drops(d)
	for {
		if !o.waitRetry(ctx, d) {
			return false
		}
		if o.drops(d) != drops {
			// Rows of b may have been dropped past a bound while it
			// waited: the next batch is read afresh, without them.
			return true
		}
		err := o.sendBatch(ctx, d.name, b)
		if ctx.Err() != nil {
			return false
		}
		if err != nil && permanent(err) && len(b.pdus) > 0 && len(b.edus) > 0 {
			// The EDUs are not lost for the PDUs' sake: they are sent on
			// their own next.
			pdus, edus := o.split(b)
			o.log.Warn("federation transaction refused for good; its PDUs are dropped for this destination, its EDUs sent alone",
				"destination", d.name, "txn_id", b.txnID, "pdus", len(b.pdus), "edus", len(b.edus), "err", err)
			if err := o.delivered(ctx, d, pdus, false); err != nil {
				o.log.Warn("federation outbox", "destination", d.name, "err", err)
				return sleep(ctx, o.minBackoff)
			}
			b = edus
			continue
		}
		if err == nil || permanent(err) {
			if err != nil {
				o.log.Warn("federation transaction refused for good; its events are dropped for this destination",
					"destination", d.name, "txn_id", b.txnID, "pdus", len(b.pdus), "edus", len(b.edus), "edu_types", b.eduTypes, "err", err)
				for _, c := range b.classes {
					if c != classPDU {
						o.metrics.droppedEDUs.WithLabelValues(c.String()).Inc()
					}
				}
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
	limit, queued := o.maxQueued[classPDU], d.queued[classPDU]
	o.mu.Unlock()
	if queued <= limit {
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
		tx.AfterCommit(func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			d.count(classPDU, -int(dropped))
			if dropped > 0 {
				d.drops++
			}
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

// drops reads d.drops.
func (o *Outbox) drops(d *destination) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return d.drops
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
// The rows it removes (some may have been replaced by newer EDUs since)
// come off the queue's counts once the write commits: the writer commits
// in order, so they and the additions of queued (also run after commits)
// apply in the order of the writes.
func (o *Outbox) delivered(ctx context.Context, d *destination, b *batch, ok bool) error {
	now := time.Now()
	return o.db.Write(ctx, func(tx *storage.Tx) error {
		var removed [numClasses]int
		for i, rowID := range b.rowIDs {
			res, err := tx.Exec(ctx, `DELETE FROM federation_outbound WHERE id = $1`, rowID)
			if err != nil {
				return fmt.Errorf("remove sent row: %w", err)
			}
			n, _ := res.RowsAffected()
			removed[b.classes[i]] += int(n)
		}
		for _, pduID := range b.pduIDs {
			if _, err := tx.Exec(ctx, `DELETE FROM federation_outbound_pdus WHERE id = $1
AND NOT EXISTS (SELECT 1 FROM federation_outbound q WHERE q.pdu_id = $1)`, pduID); err != nil {
				return fmt.Errorf("remove sent PDU: %w", err)
			}
		}
		if ok {
			if err := saveDestination(ctx, tx, d.name, 0, time.Time{}, time.Time{}, now); err != nil {
				return err
			}
		}
		tx.AfterCommit(func() {
			o.mu.Lock()
			defer o.mu.Unlock()
			for c, n := range removed {
				d.count(rowClass(c), -n)
			}
			if d.queued[classPDU] == 0 {
				d.flushedLocked()
			}
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
	d.flushedLocked() // a Flush waits for nothing now
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
		Destination: d.name, QueueDepth: d.depth(), Failures: d.failures, Down: d.failures >= DownAfter,
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
