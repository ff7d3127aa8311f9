package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// PDUOutcome is what became of one PDU that ReceivePDUs took: its event ID
// ("" when it could not be worked out) and nil, or why it was refused, as
// ReceivePDU answers.
type PDUOutcome struct {
	ID  id.EventID
	Err error
}

// ReceivePDUs takes the PDUs of one room that origin sent in one
// transaction, in their order, with the checks on receipt and the outcome
// of ReceivePDU for each: a refused PDU leaves the others as they would be
// without it, rejected and soft-failed events are stored as such, and an
// accepted event is answered only once it has committed.
//
// It does the work in bulk. Every PDU is parsed and its signature and
// content hash checked on every core, outside the room's lock, and so is
// the auth check against its own auth_events when those are stored. Then
// a run of PDUs that each follow the pipeline's head (its prev_events are
// the head's forward extremities, its auth events are known, it is not a
// redaction and no redaction waits for it) is checked against the head
// in memory under one hold of the room's lock, as the local send path
// checks its events, and queued to the database writer as one write: one
// commit, after which the OnEvent hooks run for each event in order, so a
// /sync woken by the first sees the whole run. Any other PDU takes
// ReceivePDU's path once the run before it has committed.
func (e *Engine) ReceivePDUs(ctx context.Context, origin string, raws []json.RawMessage) []PDUOutcome {
	out := make([]PDUOutcome, len(raws))
	r := e.batchRoom(ctx, origin, raws)
	if r == nil {
		e.receiveEach(ctx, origin, raws, out)
		return out
	}
	b := e.prepareBatch(ctx, r, raws, out)
	for i := 0; i < len(b.items); {
		n, unwritten, err := e.acceptRun(ctx, r, b, i)
		if err != nil {
			// The room's pipeline broke: what is left goes one by one,
			// through the room read again from the database. So does the
			// run whose write failed, which fails every event in it and
			// not only the one at fault: the origin had its transaction
			// answered and will not send the others again.
			for _, k := range unwritten {
				out[k].ID, out[k].Err = e.ReceivePDU(ctx, origin, raws[k])
			}
			e.receiveEach(ctx, origin, raws[i+n:], out[i+n:])
			break
		}
		if i += n; i < len(b.items) {
			it := &b.items[i]
			out[i].Err = e.receive(ctx, r, origin, it.ev, true)
			it.pending = false
			i++
		}
	}
	for i, it := range b.items {
		if it.dupOf >= 0 {
			out[i] = out[it.dupOf]
		}
	}
	return out
}

// receiveEach passes each PDU through ReceivePDU.
func (e *Engine) receiveEach(ctx context.Context, origin string, raws []json.RawMessage, out []PDUOutcome) {
	for i, raw := range raws {
		out[i].ID, out[i].Err = e.ReceivePDU(ctx, origin, raw)
	}
}

// batchRoom returns the room of raws when ReceivePDUs can take them
// together: more than one PDU, all of one known room that origin is in.
// Otherwise each goes through ReceivePDU, which refuses them one by one.
func (e *Engine) batchRoom(ctx context.Context, origin string, raws []json.RawMessage) *room {
	if len(raws) < 2 || e.Remote == nil {
		return nil
	}
	var roomID id.RoomID
	for _, raw := range raws {
		var head struct {
			RoomID id.RoomID `json:"room_id"`
		}
		if json.Unmarshal(raw, &head) != nil || head.RoomID == "" || (roomID != "" && head.RoomID != roomID) {
			return nil
		}
		roomID = head.RoomID
	}
	r, err := e.room(ctx, roomID)
	if err != nil || !e.serverKnownIn(ctx, origin, r.id) {
		return nil
	}
	return r
}

// batch is the PDUs of one ReceivePDUs call, parsed, and their outcomes.
type batch struct {
	items []batchItem
	out   []PDUOutcome
	// stored holds the events stored before the batch that its PDUs name
	// (themselves and their auth events).
	stored map[id.EventID]*Event
	keys   *eventKeys
}

// batchItem is one PDU of a batch.
type batchItem struct {
	ev *Event
	// pending is set while the PDU has no outcome.
	pending bool
	// authChecked is set once the auth check against its own auth_events
	// has passed.
	authChecked bool
	// dupOf is the index of an earlier PDU of the batch with the same ID
	// (whose outcome it shares), or -1.
	dupOf int
}

// done gives the PDU at i its outcome.
func (b *batch) done(i int, err error) {
	b.items[i].pending = false
	b.out[i].Err = err
}

// prepareBatch parses raws and checks their signatures and hashes, then
// the auth rules against their own auth_events where those are all
// stored, on every core. PDUs refused here get their outcome.
func (e *Engine) prepareBatch(ctx context.Context, r *room, raws []json.RawMessage, out []PDUOutcome) *batch {
	b := &batch{items: make([]batchItem, len(raws)), out: out, keys: &eventKeys{fetch: e.keyFunc(ctx)}}
	evs, errs := e.parseRemoteAll(ctx, r.version, raws)
	first := map[id.EventID]int{}
	var want []id.EventID
	for i, ev := range evs {
		it := &b.items[i]
		it.dupOf = -1
		if errs[i] != nil {
			out[i].Err = errs[i]
			continue
		}
		out[i].ID = ev.ID
		if ev.RoomID != r.id {
			out[i].Err = mxhttp.BadJSON("event is not in room %s", r.id)
			continue
		}
		it.ev, it.pending = ev, true
		if j, ok := first[ev.ID]; ok {
			it.dupOf, it.pending = j, false
			continue
		}
		first[ev.ID] = i
		want = append(want, ev.ID)
		want = append(want, ev.PDU.AuthEvents...)
	}
	stored, err := e.anyEvents(ctx, want)
	if err != nil {
		stored = map[id.EventID]*Event{} // the checks below read again
	}
	b.stored = stored
	onEveryCore(len(b.items), func(i int) {
		it := &b.items[i]
		if !it.pending || stored[it.ev.ID] != nil || !allIn(it.ev.PDU.AuthEvents, stored) {
			return // answered, or checked under the lock or on ReceivePDU's path
		}
		if err := e.checkAuthEvents(ctx, r, it.ev, stored, b.keys.get); err != nil {
			b.done(i, err)
			return
		}
		it.authChecked = true
	})
	return b
}

// acceptRun takes the run of PDUs from start on that follow the
// pipeline's head (see ReceivePDUs) and returns how many PDUs it settled:
// the next one, if any, needs ReceivePDU's path. An error means the room's
// pipeline broke; when it broke because the run's write failed, unwritten
// holds the indexes of the PDUs of that write, which have no outcome yet.
func (e *Engine) acceptRun(ctx context.Context, r *room, b *batch, start int) (n int, unwritten []int, err error) {
	r.settle()
	built, at, n, wait, err := e.queueRun(ctx, r, b, start)
	if err != nil || wait == nil {
		return n, nil, err
	}
	if err := wait(); err != nil {
		e.dropRoom(r)
		e.log.Warn("persist of a run of remote events failed; taking them one by one", "room_id", r.id, "events", len(built), "err", err)
		return n, at, fmt.Errorf("persist events: %w", err)
	}
	for k, a := range built {
		e.cache.put(a.ev)
		b.done(at[k], nil)
	}
	for _, a := range built {
		e.runHooks(r, a)
	}
	return n, nil, nil
}

// queueRun is the part of acceptRun that runs under r.mu: it checks the
// run's PDUs against the head, gives the refused ones their outcome, and
// queues the accepted ones (built, at their indexes at) in one write. n
// counts the PDUs it settled, accepted ones included.
func (e *Engine) queueRun(ctx context.Context, r *room, b *batch, start int) (built []accepted, at []int, n int, wait func() error, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.drain(); err != nil {
		return nil, nil, 0, nil, err
	}
	if r.broken.Load() {
		return nil, nil, 0, nil, errPipelineBroken
	}
	var ids []id.EventID
	for _, it := range b.items[start:] {
		if it.pending && b.stored[it.ev.ID] == nil {
			ids = append(ids, it.ev.ID)
		}
	}
	// What arrived meanwhile by another way, and which events a
	// redaction committed before the lock waits for.
	storedNow, err := e.anyEvents(ctx, ids)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	awaited, err := e.redactionTargets(ctx, r.id, ids)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	known := maps.Clone(b.stored)
	getEvents := e.authEventLoader(ctx, known)
	head, v := r.head, r.version
	i := start
	for ; i < len(b.items); i++ {
		it := &b.items[i]
		if !it.pending {
			continue
		}
		ev := it.ev
		if old := b.stored[ev.ID]; old != nil || storedNow[ev.ID] != nil {
			if old == nil {
				old = storedNow[ev.ID]
			}
			b.done(i, knownOutcome(old, false))
			continue
		}
		if !followsHead(head, ev) || ev.Type == "m.room.redaction" || awaited[ev.ID] {
			break
		}
		if ok, err := e.authEventsKnown(ctx, ev, known); err != nil || !ok {
			if err != nil {
				return nil, nil, 0, nil, err
			}
			break // fetched on ReceivePDU's path
		}
		if !it.authChecked {
			if err := e.checkAuthEvents(ctx, r, ev, known, b.keys.get); err != nil {
				b.done(i, err)
				continue
			}
		}
		// The state before the event is the head's, which is also the
		// current state: a check against it is both the check against the
		// state before and the soft-fail check.
		fromHead, err := e.partialAuthEvents(ctx, r, head, ev, known, getEvents)
		if err != nil {
			return nil, nil, 0, nil, err
		}
		if err := authorizeRules(v, ev.PDU, fromHead, getEvents, b.keys.get); err != nil {
			if r.partial.Load() != nil {
				// Rejected on ReceivePDU's path, which keeps the state
				// it was rejected by for the resync's second check.
				break
			}
			b.done(i, e.reject(ctx, ev, err))
			continue
		}
		addUnsigned(ev, head)
		head = head.with(v, ev)
		built, at = append(built, accepted{ev: ev, after: head}), append(at, i)
		known[ev.ID] = ev
	}
	if len(built) > 0 {
		// As for local events, the write is made whatever the caller's
		// context does: the head has moved on.
		wait = e.queueWrite(ctx, r, built)
		r.head = head
	}
	return built, at, i - start, wait, nil
}

// followsHead reports whether ev's prev_events are exactly the forward
// extremities of head, so that the state before ev is head's state (the
// room's current state is the resolution of the states after its
// extremities).
func followsHead(head *roomState, ev *Event) bool {
	prevs := ev.PDU.PrevEvents
	if len(head.extremities) == 0 || len(prevs) == 0 {
		return false
	}
	for _, p := range prevs {
		if !containsID(head.extremities, p) {
			return false
		}
	}
	for _, x := range head.extremities {
		if !containsID(prevs, x) {
			return false
		}
	}
	return true
}

func containsID(ids []id.EventID, want id.EventID) bool {
	for _, x := range ids {
		if x == want {
			return true
		}
	}
	return false
}

// allIn reports whether every ID is a key of m.
func allIn(ids []id.EventID, m map[id.EventID]*Event) bool {
	for _, x := range ids {
		if m[x] == nil {
			return false
		}
	}
	return true
}

// authEventsKnown reports whether every auth event of ev is in known or
// stored; those found stored are added to known.
func (e *Engine) authEventsKnown(ctx context.Context, ev *Event, known map[id.EventID]*Event) (bool, error) {
	var load []id.EventID
	for _, a := range ev.PDU.AuthEvents {
		if known[a] == nil {
			load = append(load, a)
		}
	}
	if len(load) == 0 {
		return true, nil
	}
	found, err := e.anyEvents(ctx, load)
	if err != nil {
		return false, err
	}
	maps.Copy(known, found)
	return allIn(load, known), nil
}

// redactionTargets returns which of ids a redaction of the room, stored
// before its target, waits for (pending_redactions).
func (e *Engine) redactionTargets(ctx context.Context, roomID id.RoomID, ids []id.EventID) (map[id.EventID]bool, error) {
	out := map[id.EventID]bool{}
	err := inChunks(ids, func(part []id.EventID) error {
		rows, err := e.db.Query(ctx, "SELECT target_id FROM pending_redactions WHERE room_id = $1 AND target_id IN ("+placeholders(2, len(part))+")",
			append([]any{roomID}, anySlice(part)...)...)
		if err != nil {
			return fmt.Errorf("pending redactions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t id.EventID
			if err := rows.Scan(&t); err != nil {
				return err
			}
			out[t] = true
		}
		return rows.Err()
	})
	return out, err
}

// onEveryCore calls f for each index below n, on as many goroutines as
// there are cores.
func onEveryCore(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}
