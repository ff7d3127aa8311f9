package rooms

import (
	"context"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Remote is what the engine needs from other servers. Node sets
// Engine.Remote to an adapter over the federation client; on a node that
// does not federate it is nil, and remote PDUs are refused.
type Remote interface {
	// VerifyKey returns the server's public key with that ID, valid at
	// validAt.
	VerifyKey(ctx context.Context, server string, keyID id.KeyID, validAt time.Time) (id.SigningKey, error)
	// GetMissingEvents asks server for the events between earliest and
	// latest (/get_missing_events).
	GetMissingEvents(ctx context.Context, server string, roomID id.RoomID, earliest, latest []id.EventID, limit int, minDepth int64) ([]json.RawMessage, error)
	// GetStateIDs asks server for the state before an event and its auth
	// chain, as IDs (/state_ids).
	GetStateIDs(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID) (state, authChain []id.EventID, err error)
	// GetEvent asks server for one event (/event).
	GetEvent(ctx context.Context, server string, eventID id.EventID) (json.RawMessage, error)
}

// Limits of the PDU format that the checks on receipt enforce.
const (
	maxPrevEventsReceived = 20
	maxAuthEventsReceived = 10
)

// errNoFederation refuses remote events on a node that does not federate.
var errNoFederation = mxhttp.Forbidden("this server does not federate")

// keyFunc returns the signature checks' key lookup: this server's own key,
// and other servers' keys through Remote.
func (e *Engine) keyFunc(ctx context.Context) pdu.GetKeyFunc {
	return func(server string, keyID id.KeyID, validAt time.Time) (id.SigningKey, time.Time, error) {
		if server == e.signer.ServerName {
			return e.localKey(server, keyID, validAt)
		}
		if e.Remote == nil {
			return "", time.Time{}, errors.New("this server does not federate")
		}
		key, err := e.Remote.VerifyKey(ctx, server, keyID, validAt)
		if err != nil {
			return "", time.Time{}, err
		}
		// Remote answers with a key valid at validAt.
		return key, validAt, nil
	}
}

// parseRemote runs the first checks on receipt of a PDU of a room of
// version v: format and size, the sender's server's signature (refused
// otherwise), and the content hash (the event is redacted when it does
// not match). The event returned is in the form it is stored in, without
// the sender's unsigned data.
func (e *Engine) parseRemote(ctx context.Context, v id.RoomVersion, raw []byte) (*Event, error) {
	if len(raw) > MaxEventBytes {
		return nil, mxhttp.TooLarge("event too large (%d bytes, limit %d)", len(raw), MaxEventBytes)
	}
	if usesV1Format(v) {
		return nil, mxhttp.UnsupportedRoomV("room version %s is not supported over federation", v)
	}
	if !IsSupported(v) {
		return nil, mxhttp.UnsupportedRoomV("room version %q is not supported", v)
	}
	pd := &pdu.PDU{}
	if err := jsonv2.Unmarshal(raw, pd); err != nil {
		return nil, mxhttp.BadJSON("invalid PDU: %v", err)
	}
	if err := checkFormat(v, pd); err != nil {
		return nil, err
	}
	evID, err := pd.GetEventID(v)
	if err != nil {
		return nil, mxhttp.BadJSON("invalid PDU: %v", err)
	}
	if err := pd.VerifySignature(v, pd.Sender.Homeserver(), e.keyFunc(ctx)); err != nil {
		return nil, mxhttp.Forbidden("event %s is not signed by its sender's server: %v", evID, err)
	}
	if !pd.VerifyContentHash() {
		pd = pd.Redact(v)
	}
	pd.Unsigned = nil
	stored, err := jsonv2.Marshal(pd)
	if err != nil {
		return nil, mxhttp.BadJSON("invalid PDU: %v", err)
	}
	roomID := pd.RoomID
	if v.RoomIDIsCreateEventID() && pd.Type == "m.room.create" {
		roomID = id.RoomID("!" + evID[1:])
	}
	ev := &Event{
		ID: evID, RoomID: roomID, Type: pd.Type, StateKey: pd.StateKey, Sender: pd.Sender,
		Depth: pd.Depth, TS: pd.OriginServerTS, PDU: pd, JSON: stored,
	}
	ev.RelType, ev.RelatesTo, ev.ThreadID = relationOf(pd.Content)
	return ev, nil
}

// checkFormat checks what the signature and auth checks take for granted.
func checkFormat(v id.RoomVersion, pd *pdu.PDU) error {
	if pd.Type == "" {
		return mxhttp.BadJSON("event has no type")
	}
	if _, _, err := pd.Sender.ParseAndValidateRelaxed(); err != nil {
		return mxhttp.BadJSON("invalid sender %q", pd.Sender)
	}
	if pd.RoomID == "" && !(v.RoomIDIsCreateEventID() && pd.Type == "m.room.create") {
		return mxhttp.BadJSON("event has no room_id")
	}
	if pd.Depth < 0 || pd.Depth > maxDepth {
		return mxhttp.BadJSON("event depth %d out of range", pd.Depth)
	}
	if pd.PrevEvents == nil || pd.AuthEvents == nil {
		return mxhttp.BadJSON("event lacks prev_events or auth_events")
	}
	if len(pd.PrevEvents) > maxPrevEventsReceived || len(pd.AuthEvents) > maxAuthEventsReceived {
		return mxhttp.BadJSON("event has too many prev_events or auth_events")
	}
	if pd.Hashes == nil || len(pd.Hashes.SHA256) == 0 {
		return mxhttp.BadJSON("event has no content hash")
	}
	if pd.Content == nil {
		return mxhttp.BadJSON("event has no content")
	}
	return nil
}

// ReceivePDU runs the spec's checks on receipt of a PDU that origin sent
// (format and size, signatures, content hash, auth against its
// auth_events, against the state before it, soft-fail against the current
// state) and stores it. A nil error means the event is known now: stored
// in the timeline, or soft-failed. An event already known answers nil.
func (e *Engine) ReceivePDU(ctx context.Context, origin string, raw json.RawMessage) (id.EventID, error) {
	if e.Remote == nil {
		return "", errNoFederation
	}
	var head struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.RoomID == "" {
		return "", mxhttp.BadJSON("invalid PDU: no room_id")
	}
	r, err := e.room(ctx, head.RoomID)
	if err != nil {
		return "", err
	}
	ev, err := e.parseRemote(ctx, r.version, raw)
	if err != nil {
		return "", err
	}
	if ev.RoomID != r.id {
		return ev.ID, mxhttp.BadJSON("event is not in room %s", r.id)
	}
	if _, err := e.acceptRemote(ctx, r, ev, receiveOpts{}); err != nil {
		return ev.ID, err
	}
	return ev.ID, nil
}

// receiveOpts adjust the checks on receipt for the membership endpoints.
type receiveOpts struct {
	// strict refuses an event that would be soft-failed (send_join and
	// friends, whose event must be allowed by the current state).
	strict bool
	// before is the state before the event when it is given rather than
	// computed from prev_events (a joined room's first event); known then
	// holds the events it names, outliers those to store.
	before   idState
	known    map[id.EventID]*Event
	outliers []*Event
	newRoom  *Event
}

// acceptRemote passes ev, a remote event that passed parseRemote, through
// the room's pipeline: the auth checks on top of the room's committed
// state, then the same write, view update and hooks as local events. It
// returns the stored event; nil, nil when it was soft-failed.
func (e *Engine) acceptRemote(ctx context.Context, r *room, ev *Event, opts receiveOpts) (*Event, error) {
	a, wait, known, err := e.enqueueRemote(ctx, r, ev, opts)
	if err != nil || a == nil {
		return known, err
	}
	if err := wait(); err != nil {
		e.dropRoom(r)
		e.log.Error("persist remote event failed", "room_id", r.id, "event_id", ev.ID, "err", err)
		return nil, fmt.Errorf("persist event: %w", err)
	}
	e.cache.put(a.ev)
	e.runHooks(r, *a)
	return a.ev, nil
}

// enqueueRemote is the part of acceptRemote that runs under r.mu. It
// returns the accepted event and its write, or the stored event when the
// event is known already (a nil accepted event without an error is a
// known or soft-failed one).
func (e *Engine) enqueueRemote(ctx context.Context, r *room, ev *Event, opts receiveOpts) (a *accepted, wait func() error, known *Event, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.drain(); err != nil {
		return nil, nil, nil, err
	}
	if r.broken.Load() {
		return nil, nil, nil, errPipelineBroken
	}
	stored, err := e.anyEvents(ctx, []id.EventID{ev.ID})
	if err != nil {
		return nil, nil, nil, err
	}
	if old := stored[ev.ID]; old != nil {
		return nil, nil, old, knownOutcome(old, opts.strict)
	}
	a, err = e.checkRemote(ctx, r, ev, opts)
	if err != nil || a == nil {
		return nil, nil, nil, err
	}
	wait = e.queueWrite(ctx, r, []accepted{*a})
	r.head = a.after
	return a, wait, nil, nil
}

// knownOutcome answers an event received again with what it met the
// first time.
func knownOutcome(old *Event, strict bool) error {
	switch {
	case old.Rejected:
		return mxhttp.Forbidden("event %s was rejected", old.ID)
	case old.SoftFailed && strict:
		return mxhttp.Forbidden("event %s is not allowed by the room's current state", old.ID)
	}
	return nil
}

// checkRemote runs the auth checks on receipt on ev, with r.mu held and
// the room's writes committed. A rejected or soft-failed event is stored
// beside the timeline; a rejected one (and a soft-failed one when strict)
// answers an error, a soft-failed one nil, nil.
func (e *Engine) checkRemote(ctx context.Context, r *room, ev *Event, opts receiveOpts) (*accepted, error) {
	v := r.version
	getEvents := e.authEventLoader(ctx, opts.known)
	keys := e.keyFunc(ctx)
	// Auth against the event's own auth_events.
	if err := authorizeRules(v, ev.PDU, nil, getEvents, keys); err != nil {
		return nil, e.reject(ctx, ev, err)
	}
	d := &dagFacts{}
	var prevs []*Event
	if opts.before != nil {
		d.before = opts.before
		d.outliers, d.newRoom = opts.outliers, opts.newRoom
	} else {
		var err error
		if prevs, err = e.timelineEvents(ctx, ev.PDU.PrevEvents); err != nil {
			return nil, err
		}
		if len(prevs) < len(ev.PDU.PrevEvents) {
			return nil, mxhttp.Forbidden("event %s has prev_events this server does not have", ev.ID)
		}
		if err := e.stateBefore(ctx, r, prevs, d); err != nil {
			return nil, err
		}
	}
	head := r.head
	beforeState, err := e.stateFrom(ctx, head, d.before, opts.known, nil, 0)
	if err != nil {
		return nil, err
	}
	// Auth against the state before the event.
	if err := authorizeRules(v, ev.PDU, authEventsIn(v, beforeState, ev), getEvents, keys); err != nil {
		return nil, e.reject(ctx, ev, err)
	}
	// Soft-fail against the current state (for a joined room's first
	// event, the state given is the current one).
	if opts.before != nil {
		addUnsigned(ev, beforeState)
		return e.acceptInto(ctx, r, head, ev, d, opts.known)
	}
	if err := authorizeRules(v, ev.PDU, authEventsIn(v, head, ev), getEvents, keys); err != nil {
		if opts.strict {
			return nil, mxhttp.Forbidden("%s", authMessage(err))
		}
		ev.SnapshotBefore = d.beforeSnap
		if err := e.recordOutside(ctx, ev, kindSoftFailed, authMessage(err)); err != nil {
			return nil, err
		}
		e.log.Info("soft-failed remote event", "room_id", r.id, "event_id", ev.ID, "reason", authMessage(err))
		return nil, nil
	}
	addUnsigned(ev, beforeState)
	return e.acceptInto(ctx, r, head, ev, d, opts.known)
}

// acceptInto works out the room's extremities and current state once ev,
// checked, joins the DAG.
func (e *Engine) acceptInto(ctx context.Context, r *room, head *roomState, ev *Event, d *dagFacts, known map[id.EventID]*Event) (*accepted, error) {
	ext := extremitiesAfter(head.extremities, ev)
	depth := max(head.depth, ev.Depth)
	afterEv := withState(d.before, ev)
	headIDs := idsOf(head)
	var after *roomState
	switch {
	case len(ext) == 1 && sameState(d.before, headIDs):
		// The straight line: the event follows the current state.
		d.current = afterEv
		after = head.with(r.version, ev)
	case len(ext) == 1:
		d.current = afterEv
	default:
		others, err := e.timelineEvents(ctx, ext[:len(ext)-1])
		if err != nil {
			return nil, err
		}
		states, _, err := e.stateAfterEvents(ctx, others)
		if err != nil {
			return nil, err
		}
		k := map[id.EventID]*Event{ev.ID: ev}
		maps.Copy(k, known)
		if d.current, err = e.resolve(ctx, r.version, append(states, afterEv), k); err != nil {
			return nil, err
		}
	}
	if after == nil {
		k := map[id.EventID]*Event{ev.ID: ev}
		for eid, x := range known {
			k[eid] = x
		}
		var err error
		if after, err = e.stateFrom(ctx, head, d.current, k, ext, depth); err != nil {
			return nil, err
		}
	}
	after.extremities, after.depth = ext, depth
	d.currentChanged = !sameState(d.current, headIDs)
	d.evIsCurrent = sameState(d.current, afterEv)
	d.changedMembers = changedMemberKeys(head, d.current)
	return &accepted{ev: ev, after: after, dag: d}, nil
}

// stateBefore works out the state before an event from its prev_events,
// all in the timeline.
func (e *Engine) stateBefore(ctx context.Context, r *room, prevs []*Event, d *dagFacts) error {
	states, snaps, err := e.stateAfterEvents(ctx, prevs)
	if err != nil {
		return err
	}
	if len(states) == 1 {
		d.before, d.beforeSnap, d.beforeBase = states[0], snaps[0], snaps[0]
		return nil
	}
	d.beforeBase = snaps[0]
	d.before, err = e.resolve(ctx, r.version, states, nil)
	return err
}

// timelineEvents loads events of the timeline (not outliers), skipping
// unknown ones.
func (e *Engine) timelineEvents(ctx context.Context, ids []id.EventID) ([]*Event, error) {
	evs, err := e.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(evs, func(ev *Event) bool { return ev.Outlier || ev.Pos == 0 }), nil
}

// authEventsIn returns the events of st that the auth rules look at for
// ev.
func authEventsIn(v id.RoomVersion, st *roomState, ev *Event) []*pdu.PDU {
	var out []*pdu.PDU
	for _, k := range ev.PDU.AuthEventSelection(v) {
		if ae := st.get(k.Type, k.StateKey); ae != nil {
			out = append(out, ae.PDU)
		}
	}
	if out == nil {
		out = []*pdu.PDU{} // nil would make the rules read auth_events
	}
	return out
}

// authEventLoader returns the auth rules' event lookup: events of known,
// then of the timeline and beside it, in the order asked, nil for an
// unknown one.
func (e *Engine) authEventLoader(ctx context.Context, known map[id.EventID]*Event) func([]id.EventID) ([]*pdu.PDU, error) {
	return func(ids []id.EventID) ([]*pdu.PDU, error) {
		var load []id.EventID
		for _, eid := range ids {
			if known[eid] == nil {
				load = append(load, eid)
			}
		}
		stored, err := e.anyEvents(ctx, load)
		if err != nil {
			return nil, err
		}
		out := make([]*pdu.PDU, len(ids))
		for i, eid := range ids {
			if ev := known[eid]; ev != nil {
				out[i] = ev.PDU
			} else if ev := stored[eid]; ev != nil {
				out[i] = ev.PDU
			}
		}
		return out, nil
	}
}

// reject stores ev as rejected and returns the refusal.
func (e *Engine) reject(ctx context.Context, ev *Event, cause error) error {
	msg := authMessage(cause)
	if err := e.recordOutside(ctx, ev, kindRejected, msg); err != nil {
		return err
	}
	return mxhttp.Forbidden("%s", msg)
}

// addUnsigned gives a remote state event the unsigned data clients expect
// (the sender's own is dropped), from the state before it.
func addUnsigned(ev *Event, before *roomState) {
	if ev.StateKey == nil {
		return
	}
	prev := before.get(ev.Type, *ev.StateKey)
	if prev == nil {
		return
	}
	u, _ := json.Marshal(map[string]any{
		"prev_content":   json.RawMessage(prev.PDU.Content),
		"replaces_state": prev.ID,
		"prev_sender":    prev.Sender,
	})
	pd := *ev.PDU
	pd.Unsigned = u
	if b, err := jsonv2.Marshal(&pd); err == nil {
		ev.PDU, ev.JSON = &pd, b
	}
}
