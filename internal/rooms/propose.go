package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// An event that another server countersigns before it joins the room (an
// invite of one of that server's users) is proposed first: built, signed
// and authorised on the room's current state, changing nothing. The
// proposal goes to the other server, and the event it returns, with its
// signature added, is appended with AppendCountersigned. A refusal leaves
// no trace in the room.

// ErrBadCountersignature is AppendCountersigned's refusal of what the
// other server returned: not the event proposed, or not validly signed.
var ErrBadCountersignature = errors.New("not the proposed event with a valid signature")

// Propose builds, signs and authorises a local user's event on the room's
// current state without appending it. Transaction IDs play no part: the
// event is remembered only once it is appended.
func (e *Engine) Propose(ctx context.Context, roomID id.RoomID, p Proto) (*Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	p.TxnID = ""
	r.mu.Lock()
	defer r.mu.Unlock()
	ev, err := e.build(r, r.head, p)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, r, r.head, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// AppendCountersigned appends proposed, an event Propose returned, as
// server returned it (signed): the same event (its ID is the reference
// hash, which signatures are no part of) with server's signature added,
// which must verify. On a room that has not moved on since the proposal
// it is appended like any local event; otherwise it joins the DAG like a
// remote event whose prev_events are known, and is refused (403) when the
// room's current state no longer allows it. Either way the OnPersist and
// OnEvent hooks see it as the local user's event it is.
func (e *Engine) AppendCountersigned(ctx context.Context, proposed *Event, server string, signed json.RawMessage) (*Event, error) {
	r, err := e.room(ctx, proposed.RoomID)
	if err != nil {
		return nil, err
	}
	ev, err := e.countersigned(ctx, r, proposed, server, signed)
	if err != nil {
		return nil, err
	}
	q, onHead, err := e.enqueueOnHead(ctx, r, ev)
	if err != nil {
		return nil, err
	}
	if !onHead {
		stored, err := e.acceptRemote(ctx, r, ev, receiveOpts{strict: true})
		if err == nil && stored == nil {
			err = mxhttp.Forbidden("event %s is not allowed by the room's current state", ev.ID)
		}
		return stored, err
	}
	evs, err := e.awaitWrite(r, q)
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// countersigned returns proposed with the signatures of server that
// signed, the event server returned, carries, once they verify and
// signed is proposed.
func (e *Engine) countersigned(ctx context.Context, r *room, proposed *Event, server string, signed json.RawMessage) (*Event, error) {
	if usesV1Format(r.version) {
		return nil, mxhttp.UnsupportedRoomV("room version %s is not supported over federation", r.version)
	}
	var returned pdu.PDU
	if err := json.Unmarshal(signed, &returned); err != nil {
		return nil, fmt.Errorf("%w: %s returned an invalid event: %v", ErrBadCountersignature, server, err)
	}
	evID, err := returned.GetEventID(r.version)
	if err != nil {
		return nil, fmt.Errorf("%w: %s returned an invalid event: %v", ErrBadCountersignature, server, err)
	}
	if evID != proposed.ID {
		return nil, fmt.Errorf("%w: %s returned event %s instead of %s", ErrBadCountersignature, server, evID, proposed.ID)
	}
	pd := proposed.PDU.Clone()
	pd.Signatures = maps.Clone(pd.Signatures)
	pd.Signatures[server] = returned.Signatures[server]
	if err := pd.VerifySignature(r.version, server, e.keyFunc(ctx)); err != nil {
		return nil, fmt.Errorf("%w: %s's signature of %s: %v", ErrBadCountersignature, server, evID, err)
	}
	raw, err := json.Marshal(pd)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	ev := *proposed
	ev.PDU, ev.JSON = pd, raw
	return &ev, nil
}

// enqueueOnHead queues the write of ev, built on the pipeline's head when
// it was proposed, if the head has not moved since (onHead); ev is
// authorised again on it.
func (e *Engine) enqueueOnHead(ctx context.Context, r *room, ev *Event) (q queuedWrite, onHead bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head := r.head
	if !slices.Equal(prevEventsOf(head.extremities), ev.PDU.PrevEvents) {
		return q, false, nil
	}
	if err := e.authorize(ctx, r, head, ev); err != nil {
		return q, true, err
	}
	after := head.with(r.version, ev)
	q.built = []accepted{{ev: ev, after: after}}
	q.wait = e.queueWrite(ctx, r, q.built)
	r.head = after
	return q, true, nil
}
