package rooms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/tidwall/gjson"

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
	// GetState asks server for the state before an event and its auth
	// chain, as PDUs (/state), handed to each one at a time as they are
	// read (authChain set for those of the auth chain): the answer of a
	// big room is hundreds of thousands of events, never held whole.
	GetState(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID, each func(authChain bool, pdu json.RawMessage) error) error
	// GetEvent asks server for one event (/event).
	GetEvent(ctx context.Context, server string, eventID id.EventID) (json.RawMessage, error)
	// Backfill asks server for up to limit events of the room reached by
	// walking back from the events of from, which are included
	// (/backfill).
	Backfill(ctx context.Context, server string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error)
}

// Limits of the PDU format that the checks on receipt enforce.
const (
	maxPrevEventsReceived = 20
	maxAuthEventsReceived = 10
)

// errNoFederation refuses remote events on a node that does not federate.
var errNoFederation = mxhttp.Forbidden("this server does not federate")

// errKeyUnavailable marks a signature check that could not run: the
// signing server's key could not be had (that server and the notaries
// unreachable, or no such key). It is no verdict on the event: the auth
// rules' refusal for it (a restricted join's authoriser's signature)
// leaves the event unchecked, never rejected for good, so a later check
// with the key can still accept it.
var errKeyUnavailable = errors.New("signing key unavailable")

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
			return "", time.Time{}, fmt.Errorf("%w: %w", errKeyUnavailable, err)
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
	if v.ForbidFloatsAndBigInts() {
		if err := checkIntegers(raw); err != nil {
			return nil, err
		}
	}
	pd := &pdu.PDU{}
	if err := jsonv2.Unmarshal(raw, pd); err != nil {
		return nil, mxhttp.BadJSON("invalid PDU: %v", err)
	}
	if err := checkFormat(v, pd); err != nil {
		return nil, err
	}
	// The event ID and the signature cover the same bytes: the redacted
	// event in canonical JSON, made once for both.
	signed, err := canonicaljson.Marshal(pd.Clone().RedactForSignature(v))
	if err != nil {
		return nil, mxhttp.BadJSON("invalid PDU: %v", err)
	}
	evID, err := referenceID(v, signed)
	if err != nil {
		return nil, mxhttp.BadJSON("invalid PDU: %v", err)
	}
	nameCreate(pd, evID)
	if err := verifySignedBytes(v, pd, pd.Sender.Homeserver(), signed, e.keyFunc(ctx)); err != nil {
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
	return remoteEvent(v, evID, pd, stored), nil
}

// remoteEvent is the Event of a remote PDU that passed parseRemote's
// checks: pd parsed from stored, the JSON kept, with ID evID.
func remoteEvent(v id.RoomVersion, evID id.EventID, pd *pdu.PDU, stored []byte) *Event {
	if pd.Type == "m.room.redaction" && pd.Redacts == nil {
		// From room version 11 the target is in the content; the engine
		// reads it from Redacts (kept in memory only: the stored JSON is
		// the event as signed).
		if target := gjson.GetBytes(pd.Content, "redacts"); target.Type == gjson.String {
			t := id.EventID(target.Str)
			pd.Redacts = &t
		}
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
	return ev
}

// referenceID is the event ID of an event of room version v (3 and
// later) whose signing form (see pdu.PDU.RedactForSignature) is signed:
// its reference hash, as pdu.PDU.GetEventID computes it.
func referenceID(v id.RoomVersion, signed []byte) (id.EventID, error) {
	hash := sha256.Sum256(signed)
	switch v.EventIDFormat() {
	case id.EventIDFormatBase64:
		return id.EventID("$" + base64.RawStdEncoding.EncodeToString(hash[:])), nil
	case id.EventIDFormatURLSafeBase64:
		return id.EventID("$" + base64.RawURLEncoding.EncodeToString(hash[:])), nil
	}
	return "", fmt.Errorf("room version %s has no reference hash event IDs", v)
}

// verifySignedBytes is pdu.PDU.VerifySignature on the event's signing
// form, signed, made already: every signature of server on it must
// verify with a key valid when the event was sent, and one at least must
// be there.
func verifySignedBytes(v id.RoomVersion, pd *pdu.PDU, server string, signed []byte, getKey pdu.GetKeyFunc) error {
	sigs := pd.Signatures[server]
	if len(sigs) == 0 {
		return fmt.Errorf("no signatures found for server %s", server)
	}
	sentAt := time.UnixMilli(pd.OriginServerTS)
	verified := false
	var unusable []error
	for keyID, sig := range sigs {
		key, validUntil, err := getKey(server, keyID, sentAt)
		switch {
		case err != nil:
			return fmt.Errorf("failed to get key %s for %s: %w", keyID, server, err)
		case key == "":
			unusable = append(unusable, fmt.Errorf("key %s not found for %s", keyID, server))
		case validUntil.Before(sentAt) && v.EnforceSigningKeyValidity():
			unusable = append(unusable, fmt.Errorf("key %s for %s is only valid until %s, but event is from %s", keyID, server, validUntil, sentAt))
		default:
			if err := signutil.VerifyJSONCanonical(key, sig, signed); err != nil {
				return fmt.Errorf("failed to verify signature from key %s: %w", keyID, err)
			}
			verified = true
		}
	}
	if !verified {
		return fmt.Errorf("no verifiable signatures found for server %s: %w", server, errors.Join(unusable...))
	}
	return nil
}

// checkIntegers refuses a PDU holding a number that canonical JSON has no
// form for, as room versions 6 and later do: a fraction or exponent, or
// an integer outside [-(2^53)+1, (2^53)-1].
func checkIntegers(raw []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return mxhttp.BadJSON("invalid PDU: %v", err)
		}
		if tok.Kind() != '0' {
			continue
		}
		if n, err := strconv.ParseInt(tok.String(), 10, 64); err != nil || n > maxDepth || n < -maxDepth {
			return mxhttp.BadJSON("the event holds the number %s, which this room version does not allow", tok.String())
		}
	}
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
	if errors.Is(err, ErrNoRoom) {
		return e.receiveRescinded(ctx, origin, head.RoomID, raw)
	}
	if err != nil {
		return "", err
	}
	// The origin's place in the room is known from memory: a server that
	// was never in it is refused before its event costs a key fetch.
	if !e.serverKnownIn(ctx, origin, r.id) {
		return EventIDOf(r.version, raw), mxhttp.Forbidden("%s is not in room %s", origin, r.id)
	}
	ev, err := e.parseRemote(ctx, r.version, raw)
	if err != nil {
		return "", err
	}
	if ev.RoomID != r.id {
		return ev.ID, mxhttp.BadJSON("event is not in room %s", r.id)
	}
	return ev.ID, e.receive(ctx, r, origin, ev, true)
}

// receive accepts ev, a parsed remote event, filling the gap before it
// first when its prev_events are not all known. An event pushed to this
// node (fetchMissing) gets them with get_missing_events, and is refused
// when one stays unknown here: the state at a prev_event this node never
// saw is not asked of the server that pushed the event, which could
// otherwise have any event it makes up taken for one after a gap (a
// prev_event stored beside the timeline, soft-failed, still gets its
// state fetched). An event get_missing_events
// brought (the oldest of them, whose prev_events lie beyond its limit)
// gets the state before each prev_event still missing instead (/state_ids,
// and /event for the events this node lacks).
func (e *Engine) receive(ctx context.Context, r *room, origin string, ev *Event, fetchMissing bool) error {
	if old, err := e.storedEvent(ctx, ev.ID); err != nil || old != nil {
		if err != nil {
			return err
		}
		return knownOutcome(old, false) // answers as the first time
	}
	var opts receiveOpts
	missing, err := e.missingPrevs(ctx, ev)
	if err != nil {
		return err
	}
	if len(missing) > 0 && fetchMissing {
		e.fetchMissing(ctx, r, origin, ev)
		if missing, err = e.missingPrevs(ctx, ev); err != nil {
			return err
		}
		stored, err := e.anyEvents(ctx, missing)
		if err != nil {
			return err
		}
		for _, p := range missing {
			if stored[p] == nil {
				return mxhttp.Forbidden("prev_event %s of event %s could not be had with get_missing_events", p, ev.ID)
			}
		}
	}
	if len(missing) > 0 {
		if err := e.fetchPrevStates(ctx, r, origin, missing, &opts); err != nil {
			return err
		}
	}
	if err := e.fetchAuthEvents(ctx, r, origin, ev, &opts); err != nil {
		return err
	}
	if _, err = e.acceptRemote(ctx, r, ev, opts); err != nil {
		if errors.Is(err, errLacksAuthEvents) {
			return e.awaitMissingAuthEvents(ctx, origin, ev, opts.known)
		}
		return err
	}
	stored := []id.EventID{ev.ID}
	for _, x := range opts.outliers {
		stored = append(stored, x.ID)
	}
	e.recheckAwaiting(ctx, stored)
	return nil
}

// awaitMissingAuthEvents keeps ev, refused for auth events this node does
// not have (nor known), to be checked again when they arrive.
func (e *Engine) awaitMissingAuthEvents(ctx context.Context, origin string, ev *Event, known map[id.EventID]*Event) error {
	have, err := e.anyEvents(ctx, ev.PDU.AuthEvents)
	if err != nil {
		return err
	}
	var missing []id.EventID
	for _, a := range ev.PDU.AuthEvents {
		if have[a] == nil && known[a] == nil {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return mxhttp.Forbidden("event %s lacks auth events", ev.ID)
	}
	return e.awaitAuthEvents(ctx, origin, ev, ev.JSON, missing)
}

// maxFetchedAuthEvents bounds the auth events fetched for one event.
const maxFetchedAuthEvents = 100

// fetchAuthEvents asks origin for the auth events of ev that this node
// lacks (and theirs, as far as needed), checks them as outliers and adds
// them to opts, so an event is not rejected for an auth event that only
// its sender's server has sent so far.
func (e *Engine) fetchAuthEvents(ctx context.Context, r *room, origin string, ev *Event, opts *receiveOpts) error {
	seen := map[id.EventID]bool{}
	var raws []json.RawMessage
	want := ev.PDU.AuthEvents
	for len(want) > 0 {
		have, err := e.anyEvents(ctx, want)
		if err != nil {
			return err
		}
		var next []id.EventID
		for _, eid := range want {
			if have[eid] != nil || opts.known[eid] != nil || seen[eid] {
				continue
			}
			seen[eid] = true
			if len(seen) > maxFetchedAuthEvents {
				return mxhttp.Forbidden("event %s has too many auth events this server lacks", ev.ID)
			}
			raw, err := e.Remote.GetEvent(ctx, origin, eid)
			if err != nil {
				e.log.Info("fetching an auth event failed", "room_id", r.id, "event_id", eid, "err", err)
				continue
			}
			raws = append(raws, raw)
			pd := &pdu.PDU{}
			if jsonv2.Unmarshal(raw, pd) == nil {
				next = append(next, pd.AuthEvents...)
			}
		}
		want = next
	}
	if len(raws) == 0 {
		return nil
	}
	checked, err := e.checkOutliers(ctx, r.version, r.id, raws)
	if err != nil {
		return nil // the auth check refuses the event, without storing it
	}
	if opts.known == nil {
		opts.known = map[id.EventID]*Event{}
	}
	for eid, x := range checked {
		if opts.known[eid] == nil {
			opts.known[eid] = x
			opts.outliers = append(opts.outliers, x)
		}
	}
	return nil
}

// Bounds of gap filling.
const (
	// missingEventsLimit is the limit asked of get_missing_events.
	missingEventsLimit = 10
	// maxFetchedStateEvents bounds the events fetched one by one for the
	// state before a missing prev_event.
	maxFetchedStateEvents = 1000
)

// missingPrevs lists the events ev follows (statePrevs) that are not in
// the timeline.
func (e *Engine) missingPrevs(ctx context.Context, ev *Event) ([]id.EventID, error) {
	_, missing, err := e.statePrevs(ctx, ev)
	return missing, err
}

// maxRejectedPrevsWalked bounds the rejected events statePrevs walks
// through for one event.
const maxRejectedPrevsWalked = 100

// statePrevs returns the events whose states after them make the state
// before ev: its prev_events in the timeline (prevs), and those this node
// lacks (missing). A rejected prev_event changes no state and never
// becomes an extremity, so the events it follows stand in for it, and so
// on: an event that follows a rejected one is not taken for one after a
// gap (which would ask its server again for the rejected event's state).
func (e *Engine) statePrevs(ctx context.Context, ev *Event) (prevs []*Event, missing []id.EventID, err error) {
	seen := map[id.EventID]bool{}
	walked := 0
	for want := ev.PDU.PrevEvents; len(want) > 0; {
		in, err := e.timelineEvents(ctx, want)
		if err != nil {
			return nil, nil, err
		}
		var rest []id.EventID
		for _, p := range want {
			if seen[p] {
				continue
			}
			seen[p] = true
			if i := slices.IndexFunc(in, func(x *Event) bool { return x.ID == p }); i >= 0 {
				prevs = append(prevs, in[i])
			} else {
				rest = append(rest, p)
			}
		}
		want = nil
		if len(rest) == 0 {
			break
		}
		outside, err := e.outliers(ctx, rest, true)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range rest {
			i := slices.IndexFunc(outside, func(x *Event) bool { return x.ID == p && x.Rejected })
			if i < 0 || walked >= maxRejectedPrevsWalked {
				missing = append(missing, p)
				continue
			}
			walked++
			want = append(want, outside[i].PDU.PrevEvents...)
		}
	}
	return prevs, missing, nil
}

// fetchMissing asks origin for the events between the room's forward
// extremities and ev, and accepts those it can, oldest first. Failures
// leave the rest of the gap to fetchPrevStates.
func (e *Engine) fetchMissing(ctx context.Context, r *room, origin string, ev *Event) {
	st := r.view()
	latest, err := e.timelineEvents(ctx, st.extremities)
	if err != nil {
		return
	}
	minDepth := ev.Depth
	for _, x := range latest {
		minDepth = min(minDepth, x.Depth)
	}
	raws, err := e.Remote.GetMissingEvents(ctx, origin, r.id, st.extremities, []id.EventID{ev.ID}, missingEventsLimit, minDepth)
	if err != nil {
		e.log.Info("get_missing_events failed", "room_id", r.id, "origin", origin, "err", err)
		return
	}
	// The origin may answer more than asked: each event costs checks and
	// maybe fetches of its own.
	raws = raws[:min(len(raws), missingEventsLimit)]
	var evs []*Event
	for _, raw := range raws {
		m, err := e.parseRemote(ctx, r.version, raw)
		if err != nil || m.RoomID != r.id {
			continue
		}
		evs = append(evs, m)
	}
	sortByDepth(evs)
	for _, m := range evs {
		if err := e.receive(ctx, r, origin, m, false); err != nil {
			e.log.Info("a missing event was refused", "room_id", r.id, "event_id", m.ID, "err", err)
		}
	}
}

// fetchPrevStates asks origin for the state before each missing
// prev_event and the events of it this node lacks, checks them as
// outliers, and puts the state after each prev_event into opts.
func (e *Engine) fetchPrevStates(ctx context.Context, r *room, origin string, missing []id.EventID, opts *receiveOpts) error {
	opts.prevStates = map[id.EventID]idState{}
	opts.known = map[id.EventID]*Event{}
	for _, p := range missing {
		stateIDs, chainIDs, err := e.Remote.GetStateIDs(ctx, origin, r.id, p)
		if err != nil {
			return mxhttp.Forbidden("prev_event %s is unknown and its state could not be fetched: %v", p, err)
		}
		want := append(append([]id.EventID{p}, stateIDs...), chainIDs...)
		have, err := e.anyEvents(ctx, want)
		if err != nil {
			return err
		}
		var raws []json.RawMessage
		for _, eid := range want {
			if have[eid] != nil || opts.known[eid] != nil {
				continue
			}
			if len(raws) >= maxFetchedStateEvents {
				return mxhttp.Forbidden("the state before prev_event %s has too many unknown events", p)
			}
			raw, err := e.Remote.GetEvent(ctx, origin, eid)
			if err != nil {
				e.log.Info("fetching a state event failed", "room_id", r.id, "event_id", eid, "err", err)
				continue
			}
			raws = append(raws, raw)
		}
		if len(raws) > 0 {
			checked, err := e.checkOutliers(ctx, r.version, r.id, raws)
			if err != nil {
				return err
			}
			for eid, x := range checked {
				opts.known[eid] = x
				opts.outliers = append(opts.outliers, x)
			}
		}
		lookup := func(eid id.EventID) *Event {
			if x := opts.known[eid]; x != nil {
				return x
			}
			if x := have[eid]; x != nil && !x.Rejected && !x.SoftFailed {
				return x
			}
			return nil
		}
		state := idState{}
		for _, sid := range stateIDs {
			if x := lookup(sid); x != nil && x.StateKey != nil {
				state[stateKey{x.Type, *x.StateKey}] = x.ID
			}
		}
		prev := lookup(p)
		if x := have[p]; prev == nil && x != nil && x.SoftFailed {
			prev = x // a soft-failed event is still part of the DAG
		}
		if prev == nil {
			return mxhttp.Forbidden("prev_event %s could not be fetched", p)
		}
		opts.prevStates[p] = withState(state, prev)
	}
	return nil
}

// serverKnownIn reports whether a user of server has a membership in the
// room's current state: a server that was never in the room may not send
// its events, while one whose users left or were banned may still deliver
// what they sent before (and see it soft-failed).
func (e *Engine) serverKnownIn(ctx context.Context, server string, roomID id.RoomID) bool {
	if r, err := e.room(ctx, roomID); err == nil && slices.Contains(r.partialServers(), server) {
		return true
	}
	for u := range e.Members(ctx, roomID) {
		if u.Homeserver() == server {
			return true
		}
	}
	return false
}

// receiveOpts adjust the checks on receipt for the membership endpoints.
type receiveOpts struct {
	// strict refuses an event that would be soft-failed (send_join and
	// friends, whose event must be allowed by the current state).
	strict bool
	// before is the state before the event when it is given rather than
	// computed from prev_events (a joined room's first event).
	before idState
	// prevStates holds the state after each prev_event missing from the
	// timeline, fetched from another server.
	prevStates map[id.EventID]idState
	// known holds the events that before and prevStates name and that are
	// not stored yet, outliers those to store with the event.
	known    map[id.EventID]*Event
	outliers []*Event
	newRoom  *Event
	// partial marks the joined room partial (ImportCheckedPartialJoin).
	partial *partialJoin
}

// acceptRemote passes ev, a remote event that passed parseRemote, through
// the room's pipeline: the auth checks on top of the room's committed
// state, then the same write, view update and hooks as local events. It
// returns the stored event; nil, nil when it was soft-failed.
//
// What needs no room state runs before the room's lock, so that neither
// another server nor a duplicate holds up the room's local sends: an event
// stored already answers as the first time from a lookup, and the auth
// check against the event's own auth_events (which may fetch the key of
// the server that authorised a restricted join) is made first. Under the
// lock only the checks against the room's state and the append remain,
// and they look keys up in what that first check fetched.
func (e *Engine) acceptRemote(ctx context.Context, r *room, ev *Event, opts receiveOpts) (*Event, error) {
	if old, err := e.storedEvent(ctx, ev.ID); err != nil || old != nil {
		if err != nil {
			return nil, err
		}
		return old, knownOutcome(old, opts.strict)
	}
	keys := &eventKeys{fetch: e.keyFunc(ctx)}
	if err := e.checkAuthEvents(ctx, r, ev, opts.known, keys.get); err != nil {
		return nil, err
	}
	r.settle()
	a, wait, known, err := e.enqueueRemote(ctx, r, ev, opts, keys.get)
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
func (e *Engine) enqueueRemote(ctx context.Context, r *room, ev *Event, opts receiveOpts, keys pdu.GetKeyFunc) (a *accepted, wait func() error, known *Event, err error) {
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
	a, err = e.checkRemote(ctx, r, ev, opts, keys)
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
		return fmt.Errorf("%w: %w", ErrRejected, mxhttp.Forbidden("event %s was rejected", old.ID))
	case old.SoftFailed && strict:
		return mxhttp.Forbidden("event %s is not allowed by the room's current state", old.ID)
	}
	return nil
}

// checkAuthEvents is the auth check of ev against its own auth_events,
// which needs no room state and runs without the room's lock. An auth
// event that is missing may still arrive: the event is refused then, not
// rejected for good.
func (e *Engine) checkAuthEvents(ctx context.Context, r *room, ev *Event, known map[id.EventID]*Event, keys pdu.GetKeyFunc) error {
	err := authorizeRules(r.version, ev.PDU, nil, e.authEventLoader(ctx, known), keys)
	switch {
	case err == nil:
		return nil
	case lacksAuthEvents(err):
		return fmt.Errorf("%w: %w", errLacksAuthEvents, mxhttp.Forbidden("%s", authMessage(err)))
	}
	return e.reject(ctx, ev, err)
}

// errLacksAuthEvents marks a refusal of checkAuthEvents for auth events
// not known here.
var errLacksAuthEvents = errors.New("auth events missing")

// lacksAuthEvents reports whether the auth rules refused an event only
// because some of its auth events are not known here: a verdict that an
// auth event arriving later may change, unlike a rejection.
func lacksAuthEvents(err error) bool {
	return errors.Is(err, eventauth.ErrMissingAuthEvent) || errors.Is(err, eventauth.ErrCreateEventNotFound) || errors.Is(err, eventauth.ErrFailedToGetAuthEvents)
}

// undecided reports whether the auth rules refused an event only for want
// of what may still be had (auth events not known here, a key that could
// not be fetched): such an event is left out, not rejected.
func undecided(err error) bool {
	return lacksAuthEvents(err) || errors.Is(err, errKeyUnavailable)
}

// eventKeys is the key lookup of one event's checks: what a first check
// fetched is remembered, so the checks made under the room's lock find it
// without asking another server again.
type eventKeys struct {
	fetch pdu.GetKeyFunc
	mu    sync.Mutex
	got   map[eventKeyRef]eventKey
}

type eventKeyRef struct {
	server  string
	keyID   id.KeyID
	validAt time.Time
}

type eventKey struct {
	key        id.SigningKey
	validUntil time.Time
}

func (k *eventKeys) get(server string, keyID id.KeyID, validAt time.Time) (id.SigningKey, time.Time, error) {
	ref := eventKeyRef{server, keyID, validAt}
	k.mu.Lock()
	found, ok := k.got[ref]
	k.mu.Unlock()
	if ok {
		return found.key, found.validUntil, nil
	}
	key, validUntil, err := k.fetch(server, keyID, validAt)
	if err != nil {
		return "", time.Time{}, err
	}
	k.mu.Lock()
	if k.got == nil {
		k.got = map[eventKeyRef]eventKey{}
	}
	k.got[ref] = eventKey{key, validUntil}
	k.mu.Unlock()
	return key, validUntil, nil
}

// settle waits, without the room's lock, for the room's writes queued so
// far, so that drain, under the lock, waits only for those queued since.
// A failed write is drain's to report.
func (r *room) settle() {
	r.mu.Lock()
	last := r.lastWrite
	r.mu.Unlock()
	if last != nil {
		last()
	}
}

// checkRemote runs the auth checks on receipt that need the room's state
// on ev, with r.mu held and the room's writes committed (checkAuthEvents
// ran before). A rejected or soft-failed event is stored beside the
// timeline; a rejected one (and a soft-failed one when strict) answers an
// error, a soft-failed one nil, nil.
func (e *Engine) checkRemote(ctx context.Context, r *room, ev *Event, opts receiveOpts, keys pdu.GetKeyFunc) (*accepted, error) {
	v := r.version
	getEvents := e.authEventLoader(ctx, opts.known)
	d := &dagFacts{}
	d.outliers, d.newRoom, d.partial = opts.outliers, opts.newRoom, opts.partial
	if opts.before != nil {
		d.before = opts.before
	} else {
		prevs, missing, err := e.statePrevs(ctx, ev)
		if err != nil {
			return nil, err
		}
		var fetched []idState
		for _, p := range missing {
			st, ok := opts.prevStates[p]
			if !ok {
				return nil, mxhttp.Forbidden("event %s has prev_events this server does not have", ev.ID)
			}
			fetched = append(fetched, st)
		}
		for _, p := range prevs {
			d.follows = append(d.follows, p.ID)
		}
		d.follows = append(d.follows, missing...)
		// History before the event is missing here: /sync starts a
		// limited timeline at it, /messages backfills before it.
		ev.Gap = len(fetched) > 0
		if err := e.stateBefore(ctx, r, prevs, fetched, opts.known, d); err != nil {
			return nil, err
		}
	}
	head := r.head
	beforeState, err := e.stateFrom(ctx, head, d.before, opts.known, nil, 0)
	if err != nil {
		return nil, err
	}
	// Auth against the state before the event.
	fromState, err := e.partialAuthEvents(ctx, r, beforeState, ev, opts.known, getEvents)
	if err != nil {
		return nil, err
	}
	if err := authorizeRules(v, ev.PDU, fromState, getEvents, keys); err != nil {
		// Kept with the state it was refused by: in a room whose state
		// is partial, the resync checks it again (partial.go).
		ev.SnapshotBefore = d.beforeSnap
		return nil, e.reject(ctx, ev, err)
	}
	// Soft-fail against the current state (for a joined room's first
	// event, the state given is the current one).
	if opts.before != nil {
		addUnsigned(ev, beforeState)
		return e.acceptInto(ctx, r, head, ev, d, opts.known)
	}
	fromHead, err := e.partialAuthEvents(ctx, r, head, ev, opts.known, getEvents)
	if err != nil {
		return nil, err
	}
	if err := authorizeRules(v, ev.PDU, fromHead, getEvents, keys); err != nil {
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
	if err := e.redactionFacts(ctx, r, head, ev, d); err != nil {
		return nil, err
	}
	return e.acceptInto(ctx, r, head, ev, d, opts.known)
}

// redactionFacts settles the redactions ev takes part in. A redaction of
// an event of another server is applied only when its sender may redact
// (room versions 3 and later leave this check to the server applying the
// redaction); an event that a redaction received before it targets is
// stored redacted under the same rule.
func (e *Engine) redactionFacts(ctx context.Context, r *room, st *roomState, ev *Event, d *dagFacts) error {
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		if target, err := e.Event(ctx, *ev.PDU.Redacts); err == nil && target.RoomID == r.id && !redactionAllowed(st, ev, target) {
			d.skipRedaction = true
		}
	}
	rows, err := e.db.Query(ctx, "SELECT redaction_id FROM pending_redactions WHERE target_id = $1 AND room_id = $2", ev.ID, r.id)
	if err != nil {
		return fmt.Errorf("pending redactions: %w", err)
	}
	var ids []id.EventID
	for rows.Next() {
		var rid id.EventID
		if err := rows.Scan(&rid); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, rid)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return err
	}
	reds, err := e.timelineEvents(ctx, ids)
	if err != nil {
		return err
	}
	for _, red := range reds {
		if red.RoomID != r.id || !redactionAllowed(st, red, ev) {
			continue
		}
		because, _ := json.Marshal(red.Client(ClientOptions{}))
		unsigned, _ := json.Marshal(map[string]json.RawMessage{"redacted_because": because})
		b, err := redactStored(ev.JSON, r.version, unsigned)
		if err != nil {
			return fmt.Errorf("redact event: %w", err)
		}
		p, err := parsePDU(b)
		if err != nil {
			return fmt.Errorf("parse redacted event: %w", err)
		}
		ev.PDU, ev.JSON, ev.RedactedBy = p, b, red.ID
		return nil
	}
	return nil
}

// redactionAllowed reports whether red may redact target: its sender is
// of the target sender's server, or has the redact power level in st.
func redactionAllowed(st *roomState, red, target *Event) bool {
	if red.Sender.Homeserver() == target.Sender.Homeserver() {
		return true
	}
	pl := st.powerLevels()
	return pl.GetUserLevel(red.Sender) >= pl.Redact()
}

// acceptInto works out the room's extremities and current state once ev,
// checked, joins the DAG.
func (e *Engine) acceptInto(ctx context.Context, r *room, head *roomState, ev *Event, d *dagFacts, known map[id.EventID]*Event) (*accepted, error) {
	follows := ev.PDU.PrevEvents
	if d.follows != nil {
		follows = d.follows
	}
	ext := extremitiesFollowing(head.extremities, ev.ID, follows)
	depth := max(head.depth, ev.Depth)
	afterEv := withState(d.before, ev)
	if len(ext) == 1 && d.beforeSnap != 0 && d.beforeSnap == r.dbSnapshot {
		// The straight line (the event follows the current state, the
		// snapshot the room's writes left): nothing to compare or load.
		d.current, d.evIsCurrent = afterEv, true
		d.currentChanged = ev.IsState()
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			d.changedMembers = []id.UserID{id.UserID(*ev.StateKey)}
		}
		after := straightAfter(r.version, head, ev, d)
		after.extremities, after.depth = ext, depth
		return &accepted{ev: ev, after: after, dag: d}, nil
	}
	headIDs := idsOf(head)
	var after *roomState
	switch {
	case len(ext) == 1 && sameState(d.before, headIDs):
		d.current = afterEv
		after = straightAfter(r.version, head, ev, d)
	case len(ext) == 1:
		d.current = afterEv
	case len(ext) > maxPrevEvents:
		// Past the number of prev_events one event may cite, the room is
		// forked beyond what a merge can follow: the current state so far
		// (which holds every fork's state) is resolved with the state
		// after ev alone, two states, however many forks a server sends.
		k := map[id.EventID]*Event{ev.ID: ev}
		maps.Copy(k, known)
		var err error
		if d.current, err = e.resolve(ctx, r, []idState{headIDs, afterEv}, k); err != nil {
			return nil, err
		}
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
		if d.current, err = e.resolve(ctx, r, append(states, afterEv), k); err != nil {
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

// straightAfter is the state after ev, which follows the current state
// head.
func straightAfter(v id.RoomVersion, head *roomState, ev *Event, d *dagFacts) *roomState {
	if !d.skipRedaction {
		return head.with(v, ev)
	}
	// The state keeps the redaction's target as it is.
	kept := *ev
	pd := *ev.PDU
	pd.Redacts, kept.PDU = nil, &pd
	return head.with(v, &kept)
}

// stateBefore works out the state before an event from the states after
// its prev_events: those in the timeline (prevs) and those fetched from
// another server (whose events not stored yet are in known).
func (e *Engine) stateBefore(ctx context.Context, r *room, prevs []*Event, fetched []idState, known map[id.EventID]*Event, d *dagFacts) error {
	states, snaps, err := e.stateAfterEvents(ctx, prevs)
	if err != nil {
		return err
	}
	if len(states) == 1 && len(fetched) == 0 {
		d.before, d.beforeSnap, d.beforeBase = states[0], snaps[0], snaps[0]
		return nil
	}
	d.beforeBase = r.dbSnapshot
	if len(snaps) > 0 {
		d.beforeBase = snaps[0]
	}
	d.before, err = e.resolve(ctx, r, append(states, fetched...), known)
	return err
}

// timelineEvents loads events of the timeline whose state is known,
// skipping unknown ones, outliers and backfilled events (whose state this
// node does not have: an event following one is treated as following an
// unknown event, whose state is fetched).
func (e *Engine) timelineEvents(ctx context.Context, ids []id.EventID) ([]*Event, error) {
	evs, err := e.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(evs, func(ev *Event) bool { return ev.Outlier || ev.Pos <= 0 }), nil
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

// reject stores ev as rejected and returns the refusal, an ErrRejected; a
// refusal for a key that could not be had (undecided) is returned without
// a record, and is no ErrRejected.
func (e *Engine) reject(ctx context.Context, ev *Event, cause error) error {
	msg := authMessage(cause)
	if errors.Is(cause, errKeyUnavailable) {
		return mxhttp.Forbidden("%s", msg)
	}
	if err := e.recordOutside(ctx, ev, kindRejected, msg); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRejected, mxhttp.Forbidden("%s", msg))
}

// ErrRejected marks the refusal of a remote event that the auth rules
// rejected: the event is stored as rejected, which is the outcome of its
// checks on receipt, not a failure to process it (/send answers it
// without an error, as other servers do). Its refusal is also an
// *mxhttp.Error (403 M_FORBIDDEN).
var ErrRejected = errors.New("rejected by the auth rules")

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
