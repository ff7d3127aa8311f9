package rooms

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"fmt"
	"slices"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// The room operations of the Server-Server API: what the federation
// endpoints ask of the engine, on the resident server (make_*/send_*,
// state, event, auth chains) and on the joining one (SignTemplate,
// ImportJoin).

// incompatibleRoomVersion is the spec's refusal of a make_* request from a
// server that does not support the room's version.
func incompatibleRoomVersion(v id.RoomVersion) error {
	return (&mxhttp.Error{Status: 400, Code: "M_INCOMPATIBLE_ROOM_VERSION",
		Message: fmt.Sprintf("your server does not support room version %s", v)}).With("room_version", string(v))
}

// errPartialState refuses make_join, send_join and their knock forms in a
// room whose state is partial here: the answer could not name the room's
// state (MSC3706 asks for 404).
var errPartialState = mxhttp.NotFound("this server's state of the room is partial: ask another server")

// MembershipTemplate answers make_join, make_leave and make_knock: an
// unsigned member event of user (no hashes, signatures or event ID) with
// prev_events, auth_events and depth, built on the room's current state.
// It answers 403 M_FORBIDDEN when the membership would not be allowed, and
// M_INCOMPATIBLE_ROOM_VERSION when the room's version is not in supported
// (nil supported means any). A join or knock in a room whose state is
// partial here answers 404 M_NOT_FOUND.
func (e *Engine) MembershipTemplate(ctx context.Context, roomID id.RoomID, user id.UserID, membership string, supported []id.RoomVersion) (id.RoomVersion, json.RawMessage, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return "", nil, err
	}
	if r.partial.Load() != nil && membership != "leave" {
		return "", nil, errPartialState
	}
	if entering(membership) {
		if err := e.CheckRoomPolicy(ctx, roomID); err != nil {
			return "", nil, err
		}
	}
	if supported != nil && !slices.Contains(supported, r.version) {
		return "", nil, incompatibleRoomVersion(r.version)
	}
	if usesV1Format(r.version) {
		return "", nil, mxhttp.UnsupportedRoomV("room version %s is not supported over federation", r.version)
	}
	switch membership {
	case "join", "leave", "knock":
	default:
		return "", nil, mxhttp.BadJSON("membership %q has no template", membership)
	}
	content := map[string]any{"membership": membership}
	if membership == "join" {
		via, err := e.JoinAuthoriser(ctx, roomID, user)
		if err != nil {
			return "", nil, err
		}
		if via != "" {
			content["join_authorised_via_users_server"] = via
		}
	}
	cb, _ := json.Marshal(content)
	sk := string(user)
	st := r.view()
	pd := &pdu.PDU{
		AuthEvents: []id.EventID{}, Content: cb, Depth: min(st.depth+1, maxDepth),
		OriginServerTS: time.Now().UnixMilli(), PrevEvents: prevEventsOf(st.extremities),
		RoomID: r.id, Sender: user, StateKey: &sk, Type: "m.room.member",
	}
	for _, k := range pd.AuthEventSelection(r.version) {
		if ae := st.get(k.Type, k.StateKey); ae != nil {
			pd.AuthEvents = append(pd.AuthEvents, ae.ID)
		}
	}
	// The auth rules check a restricted join's authoriser's signature:
	// check a copy signed as the resident server will sign the real one.
	check := pd.Clone()
	if err := check.Sign(r.version, e.signer.ServerName, e.signer.KeyID, e.signer.Key); err != nil {
		return "", nil, mxhttp.BadJSON("cannot sign the template: %v", err)
	}
	if err := authorizeRules(r.version, check, authEventsIn(r.version, st, &Event{PDU: check}), e.authEventLoader(ctx, nil), e.keyFunc(ctx)); err != nil {
		return "", nil, mxhttp.Forbidden("%s", authMessage(err))
	}
	b, err := jsonv2.Marshal(pd)
	if err != nil {
		return "", nil, fmt.Errorf("encode template: %w", err)
	}
	return r.version, b, nil
}

// SignTemplate completes a make_* template for a local user: it sets
// origin_server_ts, the content hash and this server's signature, and
// returns the event's ID and JSON.
func (e *Engine) SignTemplate(version id.RoomVersion, template json.RawMessage) (id.EventID, json.RawMessage, error) {
	if usesV1Format(version) || !IsSupported(version) {
		return "", nil, mxhttp.UnsupportedRoomV("room version %s is not supported over federation", version)
	}
	pd := &pdu.PDU{}
	if err := jsonv2.Unmarshal(template, pd); err != nil {
		return "", nil, mxhttp.BadJSON("invalid event template: %v", err)
	}
	if pd.Sender.Homeserver() != e.signer.ServerName {
		return "", nil, mxhttp.BadJSON("the template's sender %s is not a user of this server", pd.Sender)
	}
	pd.OriginServerTS = time.Now().UnixMilli()
	pd.Hashes, pd.Signatures, pd.Unsigned = nil, nil, nil
	if err := pd.Sign(version, e.signer.ServerName, e.signer.KeyID, e.signer.Key); err != nil {
		return "", nil, mxhttp.BadJSON("cannot sign the template: %v", err)
	}
	evID, err := pd.GetEventID(version)
	if err != nil {
		return "", nil, mxhttp.BadJSON("invalid event template: %v", err)
	}
	b, err := jsonv2.Marshal(pd)
	if err != nil {
		return "", nil, fmt.Errorf("encode event: %w", err)
	}
	return evID, b, nil
}

// ReceiveMembership is send_join, send_leave and send_knock on the
// resident server: the event must be that membership of a user of origin
// (its own sender), pass every check on receipt and not be soft-failed. A
// restricted join authorised by one of this server's users gets its
// signature. It returns the stored event (with that signature). A join or
// knock in a room whose state is partial here answers 404 M_NOT_FOUND.
func (e *Engine) ReceiveMembership(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage, membership string) (*Event, error) {
	if e.Remote == nil {
		return nil, errNoFederation
	}
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if r.partial.Load() != nil && membership != "leave" {
		return nil, errPartialState
	}
	if entering(membership) {
		if err := e.CheckRoomPolicy(ctx, roomID); err != nil {
			return nil, err
		}
	}
	ev, err := e.parseRemote(ctx, r.version, raw)
	if err != nil {
		return nil, err
	}
	switch {
	case ev.ID != eventID:
		return nil, mxhttp.BadJSON("the event's ID is %s, not %s", ev.ID, eventID)
	case ev.RoomID != r.id:
		return nil, mxhttp.BadJSON("the event is not in room %s", r.id)
	case ev.Type != "m.room.member" || ev.StateKey == nil || *ev.StateKey != string(ev.Sender):
		return nil, mxhttp.BadJSON("the event is not a membership event of its sender")
	case ev.Membership() != membership:
		return nil, mxhttp.BadJSON("the event's membership is %q, not %q", ev.Membership(), membership)
	case ev.Sender.Homeserver() != origin:
		return nil, mxhttp.Forbidden("the event's sender is not a user of %s", origin)
	}
	if via := id.UserID(gjson.GetBytes(ev.PDU.Content, "join_authorised_via_users_server").Str); membership == "join" && via != "" {
		if via.Homeserver() != e.signer.ServerName {
			return nil, mxhttp.Forbidden("the join is authorised by a user of another server")
		}
		if err := e.countersign(r.version, ev); err != nil {
			return nil, err
		}
	}
	stored, err := e.acceptRemote(ctx, r, ev, receiveOpts{strict: true})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// countersign adds this server's signature to ev (a restricted join it
// authorises).
func (e *Engine) countersign(v id.RoomVersion, ev *Event) error {
	pd := ev.PDU.Clone()
	pd.Unsigned = nil
	canon, err := canonicaljson.Marshal(pd.RedactForSignature(v))
	if err != nil {
		return mxhttp.BadJSON("cannot sign the event: %v", err)
	}
	sig := ed25519.Sign(e.signer.Key, canon)
	signed := *ev.PDU
	signed.Signatures = map[string]map[id.KeyID]string{}
	for s, m := range ev.PDU.Signatures {
		signed.Signatures[s] = m
	}
	signed.AddSignature(e.signer.ServerName, e.signer.KeyID, base64.RawStdEncoding.EncodeToString(sig))
	b, err := jsonv2.Marshal(&signed)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	ev.PDU, ev.JSON = &signed, b
	return nil
}

// eventAnywhere loads an event of the room from the timeline or beside it,
// rejected ones excepted.
func (e *Engine) eventAnywhere(ctx context.Context, roomID id.RoomID, eventID id.EventID) (*Event, error) {
	evs, err := e.anyEvents(ctx, []id.EventID{eventID})
	if err != nil {
		return nil, err
	}
	ev := evs[eventID]
	if ev == nil || ev.Rejected || (roomID != "" && ev.RoomID != roomID) {
		return nil, mxhttp.NotFound("event not found")
	}
	return ev, nil
}

func sortByDepth(evs []*Event) {
	slices.SortFunc(evs, func(a, b *Event) int {
		if a.Depth != b.Depth {
			return int(a.Depth - b.Depth)
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// FederationEvent returns an event for another server: the stored PDU
// (redacted if redacted), from the timeline or beside it; never a
// rejected one.
func (e *Engine) FederationEvent(ctx context.Context, eventID id.EventID) (*Event, error) {
	return e.eventAnywhere(ctx, "", eventID)
}

// ServerInRoom reports whether a user of server is joined to the room.
func (e *Engine) ServerInRoom(ctx context.Context, server string, roomID id.RoomID) bool {
	_, found := slices.BinarySearch(e.JoinedServers(ctx, roomID), server)
	return found
}

// JoinState is the state before a join that a send_join answer gave,
// checked (CheckJoinState): the events that pass are stored as outliers
// already, and only the state's keys and event IDs are held here.
type JoinState struct {
	roomID id.RoomID
	before idState
}

// CheckJoinState checks the state and auth chain of a send_join answer
// for the room, which feed hands to add one event at a time as it reads
// them (inState false for the auth chain), with the memory of a /state
// answer of the resync (checkStreamedState): a batch of Engine.StateBatch
// events at a time, signatures on every core, spooled, then checked
// against their own auth events in depth order and stored as outliers
// (rejected where the auth rules refuse them). A state event that fails
// those checks (a missing or bad signature, a key that cannot be had, an
// auth event that cannot be verified) is left out of the state rather
// than failing the join: the join goes on when what remains allows it.
func (e *Engine) CheckJoinState(ctx context.Context, version id.RoomVersion, roomID id.RoomID, feed func(add func(inState bool, raw json.RawMessage) error) error) (*JoinState, error) {
	if e.Remote == nil {
		return nil, errNoFederation
	}
	before, err := e.checkStreamedState(ctx, version, roomID, "", feed)
	if err != nil {
		return nil, err
	}
	return &JoinState{roomID: roomID, before: before}, nil
}

// ImportJoin stores a room this node has just joined through origin: it
// checks every event of state and authChain (CheckJoinState) and appends
// join, the local user's join event the resident server accepted (as
// ImportCheckedJoin).
func (e *Engine) ImportJoin(ctx context.Context, origin string, version id.RoomVersion, join json.RawMessage, state, authChain []json.RawMessage) (*Event, error) {
	roomID, err := e.joinRoomID(ctx, version, join)
	if err != nil {
		return nil, err
	}
	st, err := e.CheckJoinState(ctx, version, roomID, func(add func(bool, json.RawMessage) error) error {
		for i, raw := range slices.Concat(state, authChain) {
			if err := add(i < len(state), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e.ImportCheckedJoin(ctx, origin, version, join, st)
}

// joinRoomID is the room of a join event as its JSON names it.
func (e *Engine) joinRoomID(ctx context.Context, version id.RoomVersion, join json.RawMessage) (id.RoomID, error) {
	ev, err := e.parseRemote(ctx, version, join)
	if err != nil {
		return "", err
	}
	return ev.RoomID, nil
}

// ImportCheckedJoin appends join, the local user's join event that origin
// accepted, to a room this node has just joined through it, with st (the
// checked state of its send_join answer) as the state before it. The
// local user's membership and /sync see the room once it returns.
func (e *Engine) ImportCheckedJoin(ctx context.Context, origin string, version id.RoomVersion, join json.RawMessage, st *JoinState) (*Event, error) {
	return e.importJoin(ctx, origin, version, join, st, nil)
}

// ImportCheckedPartialJoin is ImportCheckedJoin for a send_join answer
// with members_omitted: its state lacks the member events of other users,
// so the room is marked partial and its full state fetched in the
// background from origin and serversInRoom (partial.go). For a room known
// here (its state still partial, or completed since the join was asked
// for) the join is taken on top of the room's own state instead, which a
// partial answer would only shrink.
func (e *Engine) ImportCheckedPartialJoin(ctx context.Context, origin string, version id.RoomVersion, join json.RawMessage, st *JoinState, serversInRoom []string) (*Event, error) {
	return e.importJoin(ctx, origin, version, join, st, e.partialServers(origin, serversInRoom))
}

// partialServers are the servers a partial-state room's resync asks:
// origin first, then those of serversInRoom, each once, this one left out.
func (e *Engine) partialServers(origin string, serversInRoom []string) []string {
	servers := []string{origin}
	seen := map[string]bool{origin: true, e.signer.ServerName: true}
	for _, s := range serversInRoom {
		if !seen[s] {
			seen[s] = true
			servers = append(servers, s)
		}
	}
	return servers
}

// importJoin is ImportCheckedJoin, and ImportCheckedPartialJoin when
// partialServers is not nil.
func (e *Engine) importJoin(ctx context.Context, origin string, version id.RoomVersion, join json.RawMessage, st *JoinState, partialServers []string) (*Event, error) {
	if e.Remote == nil {
		return nil, errNoFederation
	}
	ev, err := e.parseRemote(ctx, version, join)
	if err != nil {
		return nil, err
	}
	if ev.Type != "m.room.member" || ev.Membership() != "join" || ev.Sender.Homeserver() != e.signer.ServerName {
		return nil, mxhttp.BadJSON("the event is not a join of a user of this server")
	}
	if ev.RoomID != st.roomID {
		return nil, mxhttp.BadJSON("the join is for room %s, its state for %s", ev.RoomID, st.roomID)
	}
	ev.ReceivedFrom = origin
	create := st.before[stateKey{"m.room.create", ""}]
	if create == "" {
		return nil, mxhttp.BadJSON("the room's state has no m.room.create event")
	}
	createEvent, err := e.storedEvent(ctx, create)
	if err != nil {
		return nil, err
	}
	if createEvent == nil {
		return nil, fmt.Errorf("the room's m.room.create event %s is not stored", create)
	}
	r, fresh, err := e.joiningRoom(ctx, ev.RoomID, version)
	if err != nil {
		return nil, err
	}
	opts := receiveOpts{strict: true, before: st.before}
	if fresh {
		opts.newRoom = createEvent
	}
	var pj *partialJoin
	switch {
	case partialServers == nil:
	case fresh:
		pj = newPartialJoin(ev.ID, partialServers)
		opts.partial = pj
		r.partial.Store(pj)
	default:
		// Another join while the room's state is partial here (a second
		// user's, or a rejoin after a leave), or was when the join was
		// asked for (the resync may have completed since): the answer's
		// state lacks the members this node knows, so the join goes on top
		// of the room's own state as an event received over federation
		// would, the answer's state standing in only for prev events this
		// node lacks. A running resync completes the state for it too.
		prevStates := map[id.EventID]idState{}
		for _, p := range ev.PDU.PrevEvents {
			prevStates[p] = st.before
		}
		opts = receiveOpts{strict: true, prevStates: prevStates}
	}
	joined, err := e.acceptRemote(ctx, r, ev, opts)
	if err != nil {
		if fresh {
			e.dropRoom(r)
		}
		return nil, err
	}
	if pj != nil {
		e.startResync(r)
	}
	return joined, nil
}

// joiningRoom returns the room being joined: the loaded one when this node
// knows it already, or a new empty one (fresh), registered so that the
// join goes through its pipeline.
func (e *Engine) joiningRoom(ctx context.Context, roomID id.RoomID, version id.RoomVersion) (r *room, fresh bool, err error) {
	r, err = e.room(ctx, roomID)
	if err == nil {
		if r.version != version {
			return nil, false, mxhttp.BadJSON("room %s has version %s, not %s", roomID, r.version, version)
		}
		return r, false, nil
	}
	if err != ErrNoRoom {
		return nil, false, err
	}
	r = newRoom(roomID, version)
	e.mu.Lock()
	defer e.mu.Unlock()
	if existing, ok := e.rooms[roomID]; ok {
		return existing, false, nil
	}
	e.rooms[roomID] = r
	return r, true, nil
}

// parseRemoteAll parses and checks the signatures of many remote events
// (a joined room's state and auth chain: thousands) on every core, each
// event's outcome at its index.
func (e *Engine) parseRemoteAll(ctx context.Context, v id.RoomVersion, raws []json.RawMessage) ([]*Event, []error) {
	evs, errs := make([]*Event, len(raws)), make([]error, len(raws))
	onEveryCore(len(raws), func(i int) { evs[i], errs[i] = e.parseRemote(ctx, v, raws[i]) })
	return evs, errs
}

// EventIDOf computes the ID of a PDU of a room version ("" when it cannot
// be parsed).
func EventIDOf(v id.RoomVersion, raw json.RawMessage) id.EventID {
	pd := &pdu.PDU{}
	if jsonv2.Unmarshal(raw, pd) != nil {
		return ""
	}
	evID, _ := pd.GetEventID(v)
	return evID
}

// checkOutliers runs the checks on receipt that do not need the state
// (format, signatures, hashes, auth against the event's own auth events)
// on the events of a room's state and auth chain, in depth order, and
// returns those that pass, keyed by ID. Events this node has already are
// taken as they are stored. An event the auth rules refuse is stored as
// rejected, so that the events naming it as an auth event are rejected in
// turn; one that lacks an auth event (unobtainable, or itself failing the
// checks) is only left out, as that auth event may still come.
func (e *Engine) checkOutliers(ctx context.Context, v id.RoomVersion, roomID id.RoomID, raws []json.RawMessage) (map[id.EventID]*Event, error) {
	parsed, errs := e.parseRemoteAll(ctx, v, raws)
	var evs []*Event
	seen := map[id.EventID]bool{}
	for i, ev := range parsed {
		if errs[i] != nil {
			e.log.Info("refused an event of a joined room's state", "room_id", roomID, "err", errs[i])
			continue
		}
		if ev.RoomID != roomID || seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		ev.Outlier = true
		evs = append(evs, ev)
	}
	sortByDepth(evs)
	known := map[id.EventID]*Event{}
	getEvents := e.authEventLoader(ctx, known)
	keys := e.keyFunc(ctx)
	for _, ev := range evs {
		if err := authorizeRules(v, ev.PDU, nil, getEvents, keys); err != nil {
			e.log.Info("an event of a joined room's state fails the auth rules", "room_id", roomID, "event_id", ev.ID, "err", err)
			if !undecided(err) {
				if err := e.recordOutside(ctx, ev, kindRejected, authMessage(err)); err != nil {
					return nil, err
				}
			}
			continue
		}
		known[ev.ID] = ev
	}
	if len(known) == 0 {
		return nil, mxhttp.BadJSON("no event of the room's state passes the checks on receipt")
	}
	return known, nil
}
