package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

// EDUHandler takes one EDU of an inbound transaction; an error is logged
// and changes nothing else.
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
	return s.txns.do(origin, r.PathValue("txnId"), func() *sendResponse {
		// The transaction is processed to the end even if the origin
		// hangs up: its retry will be answered from the result.
		return s.processTransaction(context.WithoutCancel(r.Context()), origin, txn)
	}), nil
}

// processTransaction hands the PDUs to the room engine, each room's in
// order and rooms in parallel (at most roomParallelism per origin), then
// the EDUs to their handlers.
func (s *Service) processTransaction(ctx context.Context, origin string, txn *transaction) *sendResponse {
	resp := &sendResponse{PDUs: map[id.EventID]pduResult{}}
	var mu sync.Mutex
	record := func(evID id.EventID, err error) {
		if evID == "" {
			s.log.Debug("federation: PDU without an event ID refused", "origin", origin, "err", err)
			return
		}
		res := pduResult{}
		if err != nil {
			res.Error = err.Error()
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
				record(s.eventID(raw), fmt.Errorf("server %s is denied by the server ACL of %s", origin, g.roomID))
			}
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			for _, raw := range g.pdus {
				record(s.receivePDU(ctx, origin, raw))
			}
		})
	}
	wg.Wait()
	for _, raw := range txn.EDUs {
		s.dispatchEDU(ctx, origin, raw)
	}
	return resp
}

// errNoReceiver refuses PDUs while no room engine takes them.
var errNoReceiver = errors.New("this server does not accept events over federation")

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

// dispatchEDU hands an EDU to the handler of its type.
func (s *Service) dispatchEDU(ctx context.Context, origin string, raw json.RawMessage) {
	var e edu
	if err := json.Unmarshal(raw, &e); err != nil || e.Type == "" {
		s.log.Debug("federation: malformed EDU ignored", "origin", origin)
		return
	}
	h := s.eduHandler(e.Type)
	if h == nil {
		return
	}
	if !isObject(e.Content) {
		s.log.Debug("federation: EDU without an object content ignored", "origin", origin, "edu_type", e.Type)
		return
	}
	content, ok := s.aclFilterEDU(ctx, origin, e.Type, e.Content)
	if !ok {
		s.log.Debug("federation: EDU refused by a server ACL", "origin", origin, "edu_type", e.Type)
		return
	}
	e.Content = content
	if err := h(ctx, origin, e.Content); err != nil {
		s.log.Debug("federation: EDU refused", "origin", origin, "edu_type", e.Type, "err", err)
	}
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

// rememberedTxns bounds the transactions whose answers are kept for
// retries.
const rememberedTxns = 4096

// txnResults remembers the answers to recent transactions per origin and
// transaction ID, so that a retry gets the same answer.
type txnResults struct {
	mu    sync.Mutex
	byKey map[txnKey]*txnResult
	order []txnKey // oldest first
}

type txnKey struct{ origin, txnID string }

type txnResult struct {
	done chan struct{}
	resp *sendResponse
}

// do returns the answer to the transaction, running process for its first
// arrival only.
func (t *txnResults) do(origin, txnID string, process func() *sendResponse) *sendResponse {
	key := txnKey{origin, txnID}
	t.mu.Lock()
	if t.byKey == nil {
		t.byKey = map[txnKey]*txnResult{}
	}
	if res, ok := t.byKey[key]; ok {
		t.mu.Unlock()
		<-res.done
		return res.resp
	}
	res := &txnResult{done: make(chan struct{})}
	t.byKey[key] = res
	t.order = append(t.order, key)
	for len(t.order) > rememberedTxns {
		old := t.order[0]
		if r := t.byKey[old]; r != nil {
			select {
			case <-r.done:
			default:
				// Still being processed: keep it (and what follows).
				old = txnKey{}
			}
		}
		if old == (txnKey{}) {
			break
		}
		delete(t.byKey, old)
		t.order = t.order[1:]
	}
	t.mu.Unlock()
	res.resp = process()
	close(res.done)
	return res.resp
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
