package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// PDUReceiver takes the PDUs of inbound transactions: the room engine's
// ReceivePDU. It runs the checks on receipt and stores the event; an error
// refuses that PDU alone. It must be idempotent.
type PDUReceiver interface {
	ReceivePDU(ctx context.Context, origin string, raw json.RawMessage) (id.EventID, error)
}

// RoomPDUReceiver is a PDUReceiver that also takes the PDUs of one room
// in one call (the room engine's ReceivePDUs), with the outcome of each,
// in order, as ReceivePDU gives it.
type RoomPDUReceiver interface {
	PDUReceiver
	ReceivePDUs(ctx context.Context, origin string, raws []json.RawMessage) []rooms.PDUOutcome
}

// EDUHandler takes one EDU of an inbound transaction. An *mxhttp.Error
// below 500 refuses the EDU: it is logged and the transaction goes on.
// Any other error is a failure to take it (a database write that failed):
// the transaction is answered 500 and not remembered, so the origin sends
// it again. Handlers must therefore be idempotent.
type EDUHandler func(ctx context.Context, origin string, content json.RawMessage) error

// HandleEDU registers the handler of an EDU type. EDUs of a type without a
// handler are ignored, as the spec asks.
func (s *Service) HandleEDU(eduType string, h EDUHandler) {
	s.eduMu.Lock()
	defer s.eduMu.Unlock()
	s.edus[eduType] = h
}

func (s *Service) eduHandler(eduType string) EDUHandler {
	s.eduMu.RLock()
	defer s.eduMu.RUnlock()
	return s.edus[eduType]
}

// SetPDUReceiver sets where the PDUs of inbound transactions go. Until it
// is set every PDU is refused.
func (s *Service) SetPDUReceiver(r PDUReceiver) { s.pdus = r }

// AuthenticatedOrigin is the server that signed an authenticated request
// (see Authenticate), or "".
func AuthenticatedOrigin(r *http.Request) string { return Origin(r.Context()) }

// roomParallelism bounds how many rooms of one origin's transactions are
// processed at once.
const roomParallelism = 4

// transaction is the body of PUT /_matrix/federation/v1/send/{txnId}.
type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []json.RawMessage `json:"edus"`
}

// edu is one EDU of a transaction.
type edu struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// parseTransaction decodes and checks a transaction body: a JSON object
// with at most MaxTxnPDUs PDUs and MaxTxnEDUs EDUs, each a JSON object.
// pdus is required by the spec, but a transaction of EDUs alone that
// leaves it out or null (as some servers send) is taken as it means.
func parseTransaction(body []byte) (*transaction, error) {
	var txn transaction
	if err := mxhttp.Unmarshal(body, &txn); err != nil {
		return nil, err
	}
	if len(txn.PDUs) > MaxTxnPDUs {
		return nil, tooLarge("a transaction carries at most %d PDUs", MaxTxnPDUs)
	}
	if len(txn.EDUs) > MaxTxnEDUs {
		return nil, tooLarge("a transaction carries at most %d EDUs", MaxTxnEDUs)
	}
	for _, raw := range txn.PDUs {
		if !isObject(raw) {
			return nil, mxhttp.BadJSON("every PDU must be a JSON object")
		}
	}
	for _, raw := range txn.EDUs {
		if !isObject(raw) {
			return nil, mxhttp.BadJSON("every EDU must be a JSON object")
		}
	}
	return &txn, nil
}

// tooLarge is 400 M_TOO_LARGE, what servers answer a transaction over the
// spec's limits with (the request itself is not too large to read).
func tooLarge(format string, args ...any) *mxhttp.Error {
	e := mxhttp.TooLarge(format, args...)
	e.Status = http.StatusBadRequest
	return e
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// pduResult is a PDU's entry in the /send response.
type pduResult struct {
	Error string `json:"error,omitempty"`
}

// sendResponse is the /send response body.
type sendResponse struct {
	PDUs map[id.EventID]pduResult `json:"pdus"`
}

func handleSend(s *Service) http.Handler { return mxhttp.Handle(s.send) }

// send is PUT /_matrix/federation/v1/send/{txnId}. A retry of a
// transaction (same origin and ID) gets the first answer without being
// processed again; while the first is being processed it waits for it.
func (s *Service) send(w http.ResponseWriter, r *http.Request) (any, error) {
	origin := AuthenticatedOrigin(r)
	body, err := mxhttp.ReadBody(r, MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	txn, err := parseTransaction(body)
	if err != nil {
		return nil, err
	}
	if txn.Origin != "" && txn.Origin != origin {
		return nil, mxhttp.Forbidden("the transaction's origin %q is not the server that signed the request", txn.Origin)
	}
	resp, err := s.txns.do(origin, r.PathValue("txnId"), func() (*sendResponse, error) {
		// The transaction is processed to the end even if the origin
		// hangs up: its retry will be answered from the result.
		return s.processTransaction(context.WithoutCancel(r.Context()), origin, txn)
	})
	if err != nil {
		s.log.Error("federation: inbound transaction failed; the origin will retry it", "origin", origin, "txn_id", r.PathValue("txnId"), "err", err)
		return nil, errTransactionFailed
	}
	return resp, nil
}

// errTransactionFailed answers a transaction this server failed to take,
// without the cause (logged here, of no use to the origin), so that the
// origin sends it again.
var errTransactionFailed = mxhttp.Unknown("the transaction could not be processed; retry it")

// processTransaction hands the PDUs to the room engine, each room's in
// order and in one call (see RoomPDUReceiver), and rooms in parallel (at
// most roomParallelism per origin), then
// the EDUs to their handlers. An EDU that could not be taken fails the
// transaction (the PDUs, taken already, are answered as known when it is
// sent again).
func (s *Service) processTransaction(ctx context.Context, origin string, txn *transaction) (*sendResponse, error) {
	resp := &sendResponse{PDUs: map[id.EventID]pduResult{}}
	var mu sync.Mutex
	record := func(evID id.EventID, err error) {
		if evID == "" {
			s.log.Debug("federation: PDU without an event ID refused", "origin", origin, "err", err)
			return
		}
		res := pduResult{}
		// A rejected event was processed: it is stored as rejected.
		if err != nil && !errors.Is(err, rooms.ErrRejected) {
			res.Error = s.pduError(origin, evID, err)
		}
		mu.Lock()
		resp.PDUs[evID] = res
		mu.Unlock()
	}
	slots := s.originSlots.acquire(origin)
	defer s.originSlots.release(origin)
	var wg sync.WaitGroup
	for _, g := range byRoom(txn.PDUs) {
		if g.roomID != "" && !s.ServerAllowed(ctx, origin, g.roomID) {
			for _, raw := range g.pdus {
				record(s.eventID(raw), mxhttp.Forbidden("server %s is denied by the server ACL of %s", origin, g.roomID))
			}
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s.receiveRoomPDUs(ctx, origin, g.pdus, record)
		})
	}
	wg.Wait()
	var failed []error
	for _, raw := range txn.EDUs {
		if err := s.dispatchEDU(ctx, origin, raw); err != nil {
			failed = append(failed, err)
		}
	}
	if failed != nil {
		return nil, errors.Join(failed...)
	}
	return resp, nil
}

// pduError is the error a PDU's entry in the /send answer carries: a
// refusal's own words, or for a failure of this server only that it
// failed (the cause, logged, is of no use to the origin and may tell it
// about this server's insides).
func (s *Service) pduError(origin string, evID id.EventID, err error) string {
	if me, ok := mxhttp.AsError(err); ok && me.Status < http.StatusInternalServerError {
		return me.Error()
	}
	s.log.Error("federation: an inbound PDU could not be processed", "origin", origin, "event_id", evID, "err", err)
	return errPDUFailed.Error()
}

// errPDUFailed is the answer for a PDU this server failed to process.
var errPDUFailed = mxhttp.Unknown("the event could not be processed")

// errNoReceiver refuses PDUs while no room engine takes them.
var errNoReceiver = mxhttp.Forbidden("this server does not accept events over federation")

// receiveRoomPDUs hands the PDUs of one room to the receiver, together
// when it takes a room's PDUs in one call, and records each outcome.
func (s *Service) receiveRoomPDUs(ctx context.Context, origin string, pdus []json.RawMessage, record func(id.EventID, error)) {
	batch, ok := s.pdus.(RoomPDUReceiver)
	if !ok || len(pdus) < 2 {
		for _, raw := range pdus {
			record(s.receivePDU(ctx, origin, raw))
		}
		return
	}
	for i, o := range batch.ReceivePDUs(ctx, origin, pdus) {
		if o.ID == "" {
			o.ID = s.eventID(pdus[i])
		}
		record(o.ID, o.Err)
	}
}

func (s *Service) receivePDU(ctx context.Context, origin string, raw json.RawMessage) (id.EventID, error) {
	if s.pdus == nil {
		return s.eventID(raw), errNoReceiver
	}
	evID, err := s.pdus.ReceivePDU(ctx, origin, raw)
	if evID == "" {
		evID = s.eventID(raw)
	}
	return evID, err
}

// pduEventID is the event_id a PDU carries (room versions 1 and 2), or "".
func pduEventID(raw json.RawMessage) id.EventID {
	var p struct {
		EventID id.EventID `json:"event_id"`
	}
	json.Unmarshal(raw, &p)
	return p.EventID
}

// roomPDUs are the PDUs of one room in a transaction, in order.
type roomPDUs struct {
	roomID id.RoomID
	pdus   []json.RawMessage
}

// byRoom groups PDUs by room_id, keeping their order within each room. A
// PDU without a room_id forms a group of its own (the engine refuses it).
func byRoom(pdus []json.RawMessage) []roomPDUs {
	var groups []roomPDUs
	index := map[id.RoomID]int{}
	for _, raw := range pdus {
		var p struct {
			RoomID id.RoomID `json:"room_id"`
		}
		if json.Unmarshal(raw, &p) != nil || p.RoomID == "" {
			groups = append(groups, roomPDUs{pdus: []json.RawMessage{raw}})
			continue
		}
		i, ok := index[p.RoomID]
		if !ok {
			i = len(groups)
			index[p.RoomID] = i
			groups = append(groups, roomPDUs{roomID: p.RoomID})
		}
		groups[i].pdus = append(groups[i].pdus, raw)
	}
	return groups
}

// eventID is the ID of a PDU of a room this node knows, or the event_id
// it carries.
func (s *Service) eventID(raw json.RawMessage) id.EventID {
	var p struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if json.Unmarshal(raw, &p) == nil && s.rooms != nil {
		if v, err := s.rooms.Version(context.Background(), p.RoomID); err == nil {
			if evID := rooms.EventIDOf(v, raw); evID != "" {
				return evID
			}
		}
	}
	return pduEventID(raw)
}

// dispatchEDU hands an EDU to the handler of its type. It returns the
// handler's failure to take the EDU; a refusal is logged only.
func (s *Service) dispatchEDU(ctx context.Context, origin string, raw json.RawMessage) error {
	var e edu
	if err := json.Unmarshal(raw, &e); err != nil || e.Type == "" {
		s.log.Debug("federation: malformed EDU ignored", "origin", origin)
		return nil
	}
	h := s.eduHandler(e.Type)
	if h == nil {
		return nil
	}
	if !isObject(e.Content) {
		s.log.Debug("federation: EDU without an object content ignored", "origin", origin, "edu_type", e.Type)
		return nil
	}
	content, ok := s.aclFilterEDU(ctx, origin, e.Type, e.Content)
	if !ok {
		s.log.Debug("federation: EDU refused by a server ACL", "origin", origin, "edu_type", e.Type)
		return nil
	}
	err := h(ctx, origin, content)
	if me, ok := mxhttp.AsError(err); ok && me.Status < http.StatusInternalServerError {
		s.log.Debug("federation: EDU refused", "origin", origin, "edu_type", e.Type, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s EDU: %w", e.Type, err)
	}
	return nil
}

// originSlots bounds the rooms processed at once for each origin.
type originSlots struct {
	mu    sync.Mutex
	slots map[string]*originSlot
}

type originSlot struct {
	ch    chan struct{}
	users int
}

func (o *originSlots) acquire(origin string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.slots == nil {
		o.slots = map[string]*originSlot{}
	}
	s := o.slots[origin]
	if s == nil {
		s = &originSlot{ch: make(chan struct{}, roomParallelism)}
		o.slots[origin] = s
	}
	s.users++
	return s.ch
}

func (o *originSlots) release(origin string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.slots[origin]; s != nil {
		if s.users--; s.users == 0 {
			delete(o.slots, origin)
		}
	}
}

// Bounds of the transactions whose answers are kept for retries.
const (
	// txnsPerOrigin is how many answers are kept for each origin (which
	// sends one transaction at a time, and retries only its latest).
	txnsPerOrigin = 64
	// txnOrigins is how many origins' answers are kept.
	txnOrigins = 4096
)

// txnResults remembers the answers to recent transactions per origin and
// transaction ID, so that a retry gets the same answer. A transaction
// still being processed is kept while those finished around it are
// trimmed; one that failed is forgotten, so its retry is processed again.
type txnResults struct {
	mu      sync.Mutex
	origins map[string]*originTxns
	clock   uint64 // counts uses, for dropping the origin unused longest
}

// originTxns are the remembered transactions of one origin.
type originTxns struct {
	byID     map[string]*txnResult
	order    []string // oldest first
	lastUsed uint64
}

type txnResult struct {
	done chan struct{}
	resp *sendResponse
	err  error
}

func (r *txnResult) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// do returns the answer to the transaction, running process for its first
// arrival only (or again after a failure).
func (t *txnResults) do(origin, txnID string, process func() (*sendResponse, error)) (*sendResponse, error) {
	t.mu.Lock()
	o := t.origin(origin)
	if res, ok := o.byID[txnID]; ok {
		t.mu.Unlock()
		<-res.done
		return res.resp, res.err
	}
	res := &txnResult{done: make(chan struct{})}
	o.byID[txnID] = res
	o.order = append(o.order, txnID)
	o.trim()
	t.mu.Unlock()

	res.resp, res.err = process()
	if res.err != nil {
		t.forget(origin, txnID, res)
	}
	close(res.done)
	return res.resp, res.err
}

// origin returns the origin's transactions, making room for a new origin
// by dropping the one unused longest that has none in progress. t.mu is
// held.
func (t *txnResults) origin(origin string) *originTxns {
	if t.origins == nil {
		t.origins = map[string]*originTxns{}
	}
	t.clock++
	o := t.origins[origin]
	if o == nil {
		if len(t.origins) >= txnOrigins {
			t.dropIdlestOrigin()
		}
		o = &originTxns{byID: map[string]*txnResult{}}
		t.origins[origin] = o
	}
	o.lastUsed = t.clock
	return o
}

// dropIdlestOrigin forgets the origin unused longest among those with no
// transaction in progress. t.mu is held.
func (t *txnResults) dropIdlestOrigin() {
	victim, oldest := "", uint64(0)
	for name, o := range t.origins {
		if (victim == "" || o.lastUsed < oldest) && !o.inProgress() {
			victim, oldest = name, o.lastUsed
		}
	}
	if victim != "" {
		delete(t.origins, victim)
	}
}

// forget drops a failed transaction, unless a newer arrival of the same ID
// took its place. Called before res.done is closed.
func (t *txnResults) forget(origin, txnID string, res *txnResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.origins[origin]
	if o == nil || o.byID[txnID] != res {
		return
	}
	delete(o.byID, txnID)
	o.order = slices.DeleteFunc(o.order, func(id string) bool { return id == txnID })
}

func (o *originTxns) inProgress() bool {
	for _, r := range o.byID {
		if !r.finished() {
			return true
		}
	}
	return false
}

// trim drops the oldest finished answers beyond txnsPerOrigin; answers
// still in progress stay wherever they are, and do not stop the trimming
// of those behind them.
func (o *originTxns) trim() {
	excess := len(o.byID) - txnsPerOrigin
	if excess <= 0 {
		return
	}
	kept := o.order[:0]
	for _, txnID := range o.order {
		if excess > 0 && o.byID[txnID].finished() {
			delete(o.byID, txnID)
			excess--
			continue
		}
		kept = append(kept, txnID)
	}
	o.order = kept
}

// aclFilterEDU applies the server ACLs of the rooms an EDU is about: an
// EDU naming a room_id whose ACL denies origin is refused (ok false), and
// the rooms of an m.receipt EDU whose ACL denies it are left out.
func (s *Service) aclFilterEDU(ctx context.Context, origin, eduType string, content json.RawMessage) (json.RawMessage, bool) {
	if eduType == "m.receipt" {
		var byRoom map[id.RoomID]json.RawMessage
		if json.Unmarshal(content, &byRoom) != nil {
			return content, true
		}
		changed := false
		for roomID := range byRoom {
			if !s.ServerAllowed(ctx, origin, roomID) {
				delete(byRoom, roomID)
				changed = true
			}
		}
		if !changed {
			return content, true
		}
		if len(byRoom) == 0 {
			return nil, false
		}
		out, err := json.Marshal(byRoom)
		return out, err == nil
	}
	var c struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if json.Unmarshal(content, &c) == nil && c.RoomID != "" && !s.ServerAllowed(ctx, origin, c.RoomID) {
		return nil, false
	}
	return content, true
}
