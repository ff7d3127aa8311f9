package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// The room endpoints of the Server-Server API on the resident server:
// make_*/send_* for joins, leaves and knocks, and reads of the room's
// events and state. Every one checks that the asking server may ask about
// the room (roomAccess).

// ServeRooms registers the room endpoints, answered from the room engine,
// and sends the PDUs of inbound transactions to it.
func (s *Service) ServeRooms(e *rooms.Engine) {
	s.rooms = e
	s.SetPDUReceiver(e)
	for _, r := range []struct {
		pattern string
		h       mxhttp.HandlerFunc
	}{
		{"GET /_matrix/federation/v1/make_join/{roomId}/{userId}", s.makeMembership("join")},
		{"GET /_matrix/federation/v1/make_leave/{roomId}/{userId}", s.makeMembership("leave")},
		{"GET /_matrix/federation/v1/make_knock/{roomId}/{userId}", s.makeMembership("knock")},
		{"PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}", s.sendJoin(1)},
		{"PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}", s.sendJoin(2)},
		{"PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}", s.sendLeave(1)},
		{"PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}", s.sendLeave(2)},
		{"PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}", s.sendKnock},
		{"PUT /_matrix/federation/v1/invite/{roomId}/{eventId}", s.invite(1)},
		{"PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", s.invite(2)},
		{"GET /_matrix/federation/v1/backfill/{roomId}", s.backfill},
		{"POST /_matrix/federation/v1/get_missing_events/{roomId}", s.getMissingEvents},
		{"GET /_matrix/federation/v1/event/{eventId}", s.event},
		{"GET /_matrix/federation/v1/state/{roomId}", s.state},
		{"GET /_matrix/federation/v1/state_ids/{roomId}", s.stateIDs},
		{"GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}", s.eventAuth},
		{"GET /_matrix/federation/v1/timestamp_to_event/{roomId}", s.timestampToEvent},
	} {
		s.Handle(r.pattern, mxhttp.Handle(r.h))
	}
}

// roomParam reads the {roomId} path value.
func roomParam(r *http.Request) (id.RoomID, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return "", err
	}
	return roomID, nil
}

// roomAccess refuses a request about a room from a server that has no
// member joined to it (403 M_FORBIDDEN), or about a room this node does
// not know (404 M_NOT_FOUND).
func (s *Service) roomAccess(ctx context.Context, origin string, roomID id.RoomID) error {
	if _, err := s.rooms.Version(ctx, roomID); err != nil {
		return mxhttp.NotFound("room %s is not known here", roomID)
	}
	if err := s.checkACL(ctx, origin, roomID); err != nil {
		return err
	}
	if !s.rooms.ServerInRoom(ctx, origin, roomID) {
		return mxhttp.Forbidden("%s is not in room %s", origin, roomID)
	}
	return nil
}

// RoomAccess refuses origin the events of a room it may not read: one
// this node does not know, one whose server ACL denies origin, or one
// origin has no member in. Other packages' Server-Server endpoints that
// serve room events check it.
func (s *Service) RoomAccess(ctx context.Context, origin string, roomID id.RoomID) error {
	return s.roomAccess(ctx, origin, roomID)
}

// makeMembership answers make_join, make_leave and make_knock: a template
// of the membership event of the path's user, who must be a user of the
// asking server.
func (s *Service) makeMembership(membership string) mxhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		origin := AuthenticatedOrigin(r)
		roomID, err := roomParam(r)
		if err != nil {
			return nil, err
		}
		user := id.UserID(r.PathValue("userId"))
		if _, _, err := user.Parse(); err != nil {
			return nil, mxhttp.InvalidParam("invalid user ID %q", user)
		}
		if user.Homeserver() != origin {
			return nil, mxhttp.Forbidden("%s is not a user of %s", user, origin)
		}
		var supported []id.RoomVersion
		if membership != "leave" {
			// Without ver the asking server supports version 1 only.
			supported = []id.RoomVersion{id.RoomV1}
			if vers := r.URL.Query()["ver"]; len(vers) > 0 {
				supported = supported[:0]
				for _, v := range vers {
					supported = append(supported, id.RoomVersion(v))
				}
			}
		}
		if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
			return nil, mxhttp.NotFound("room %s is not known here", roomID)
		}
		if err := s.checkACL(r.Context(), origin, roomID); err != nil {
			return nil, err
		}
		version, tmpl, err := s.rooms.MembershipTemplate(r.Context(), roomID, user, membership, supported)
		if err != nil {
			return nil, err
		}
		return map[string]any{"room_version": version, "event": tmpl}, nil
	}
}

// receiveMembership checks and stores the event of a send_join, send_leave
// or send_knock, then sends it on to the room's other servers.
func (s *Service) receiveMembership(r *http.Request, membership string) (*rooms.Event, error) {
	origin := AuthenticatedOrigin(r)
	roomID, err := roomParam(r)
	if err != nil {
		return nil, err
	}
	evID := id.EventID(r.PathValue("eventId"))
	if evID == "" || evID[0] != '$' {
		return nil, mxhttp.InvalidParam("invalid event ID %q", evID)
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return nil, mxhttp.NotFound("room %s is not known here", roomID)
	}
	if err := s.checkACL(r.Context(), origin, roomID); err != nil {
		return nil, err
	}
	body, err := mxhttp.ReadBody(r, MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	if !isObject(body) {
		return nil, mxhttp.BadJSON("the body must be the event, a JSON object")
	}
	ev, err := s.rooms.ReceiveMembership(r.Context(), origin, roomID, evID, body, membership)
	if err != nil {
		return nil, err
	}
	// The joining server learns the room from the answer; the others get
	// the event from us, the server that let it in.
	if err := s.Outbox.SendPDU(r.Context(), s.otherServers(r.Context(), roomID, origin), ev.JSON); err != nil {
		s.log.Warn("federation: queue a membership event for the room's servers", "event_id", ev.ID, "err", err)
	}
	return ev, nil
}

// otherServers are the servers with a member joined to the room, but
// except.
func (s *Service) otherServers(ctx context.Context, roomID id.RoomID, except string) []string {
	var out []string
	for _, server := range s.rooms.JoinedServers(ctx, roomID) {
		if server != except && server != s.serverName {
			out = append(out, server)
		}
	}
	return out
}

// sendJoin is send_join v1 ([200, body]) and v2 (body): the room's state
// before the join and its auth chain, omit_members honoured in v2.
func (s *Service) sendJoin(v int) mxhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		omit := false
		if v == 2 {
			switch o := r.URL.Query().Get("omit_members"); o {
			case "", "false":
			case "true":
				omit = true
			default:
				return nil, mxhttp.InvalidParam("omit_members must be true or false")
			}
		}
		// servers_in_room lists the servers with a joined member before
		// the join.
		before := slices.Clone(s.rooms.JoinedServers(r.Context(), id.RoomID(r.PathValue("roomId"))))
		ev, err := s.receiveMembership(r, "join")
		if err != nil {
			return nil, err
		}
		answer, err := s.rooms.StateAnswerBefore(r.Context(), ev.RoomID, ev.ID, omit)
		if err != nil {
			return nil, err
		}
		members := []answerMember{
			eventsMember("auth_chain", answer.AuthChain),
			valueMember("event", json.RawMessage(ev.JSON)),
			valueMember("members_omitted", omit),
			valueMember("origin", s.serverName),
		}
		if omit {
			members = append(members, valueMember("servers_in_room", before))
		}
		members = append(members, eventsMember("state", answer.State))
		s.writeAnswer(r.Context(), w, v == 1, members)
		return nil, nil
	}
}

func nonNil(evs []json.RawMessage) []json.RawMessage {
	if evs == nil {
		return []json.RawMessage{}
	}
	return evs
}

// sendLeave is send_leave v1 ([200, {}]) and v2 ({}).
func (s *Service) sendLeave(v int) mxhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if _, err := s.receiveMembership(r, "leave"); err != nil {
			return nil, err
		}
		if v == 1 {
			return []any{http.StatusOK, map[string]any{}}, nil
		}
		return mxhttp.Empty, nil
	}
}

// sendKnock is send_knock: the knock is stored and the room's stripped
// state returned.
func (s *Service) sendKnock(w http.ResponseWriter, r *http.Request) (any, error) {
	ev, err := s.receiveMembership(r, "knock")
	if err != nil {
		return nil, err
	}
	return map[string]any{"knock_room_state": s.strippedState(r.Context(), ev.RoomID)}, nil
}

// strippedTypes are the state events shown to invitees and knockers.
var strippedTypes = []string{"m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules",
	"m.room.canonical_alias", "m.room.encryption"}

// strippedState is the room's stripped state for invite_room_state and
// knock_room_state: type, state_key, sender and content of each event, the
// create event in full (room version 12 needs it, MSC4311).
func (s *Service) strippedState(ctx context.Context, roomID id.RoomID) []any {
	out := []any{}
	for _, t := range strippedTypes {
		ev, err := s.rooms.StateEvent(ctx, roomID, t, "")
		if err != nil || ev == nil {
			continue
		}
		if t == "m.room.create" {
			out = append(out, json.RawMessage(ev.JSON))
			continue
		}
		out = append(out, map[string]any{"type": ev.Type, "state_key": *ev.StateKey, "sender": ev.Sender, "content": ev.Content()})
	}
	return out
}

// invite is /invite v1 (the event as the body, answered [200, {event}])
// and v2 ({event, room_version, invite_room_state}): an invite of one of
// our users, countersigned and shown in their /sync.
func (s *Service) invite(v int) mxhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		roomID, err := roomParam(r)
		if err != nil {
			return nil, err
		}
		evID := id.EventID(r.PathValue("eventId"))
		body, err := mxhttp.ReadBody(r, MaxRequestBytes)
		if err != nil {
			return nil, err
		}
		var req struct {
			Event           json.RawMessage   `json:"event"`
			RoomVersion     id.RoomVersion    `json:"room_version"`
			InviteRoomState []json.RawMessage `json:"invite_room_state"`
		}
		if v == 1 {
			req.Event, req.RoomVersion = body, id.RoomV1
			var u struct {
				Unsigned struct {
					InviteRoomState []json.RawMessage `json:"invite_room_state"`
				} `json:"unsigned"`
			}
			if err := mxhttp.Unmarshal(body, &u); err != nil {
				return nil, err
			}
			req.InviteRoomState = u.Unsigned.InviteRoomState
		} else if err := mxhttp.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		if !isObject(req.Event) {
			return nil, mxhttp.BadJSON("event must be a JSON object")
		}
		if req.RoomVersion == "" {
			return nil, mxhttp.BadJSON("room_version is required")
		}
		var head struct {
			RoomID id.RoomID `json:"room_id"`
		}
		if err := json.Unmarshal(req.Event, &head); err != nil || head.RoomID != roomID {
			return nil, mxhttp.BadJSON("the event is not in room %s", roomID)
		}
		if err := s.checkACL(r.Context(), AuthenticatedOrigin(r), roomID); err != nil {
			return nil, err
		}
		if got := rooms.EventIDOf(req.RoomVersion, req.Event); got != evID {
			return nil, mxhttp.BadJSON("the event's ID is %q, not %s", got, evID)
		}
		if err := s.checkInvitee(r.Context(), req.Event); err != nil {
			return nil, err
		}
		signed, err := s.rooms.ReceiveInvite(r.Context(), AuthenticatedOrigin(r), req.RoomVersion, req.Event, req.InviteRoomState)
		if err != nil {
			return nil, err
		}
		resp := map[string]any{"event": json.RawMessage(signed)}
		if v == 1 {
			return []any{http.StatusOK, resp}, nil
		}
		return resp, nil
	}
}

// checkInvitee refuses an invite of one of this server's users who has no
// account or a deactivated one (403 M_FORBIDDEN: the spec's invite
// endpoints answer a refused invite with 403) and one that the invitee's
// invite permission config blocks (403 M_INVITE_BLOCKED). An invitee of
// another server is left to ReceiveInvite to refuse.
func (s *Service) checkInvitee(ctx context.Context, invite json.RawMessage) error {
	var ev struct {
		Sender   id.UserID `json:"sender"`
		StateKey string    `json:"state_key"`
	}
	if err := json.Unmarshal(invite, &ev); err != nil {
		return mxhttp.BadJSON("invalid invite: %v", err)
	}
	invitee := id.UserID(ev.StateKey)
	if invitee.Homeserver() != s.serverName {
		return nil
	}
	if s.LocalUserActive != nil {
		active, err := s.LocalUserActive(ctx, invitee)
		if err != nil {
			return fmt.Errorf("invitee: %w", err)
		}
		if !active {
			return mxhttp.Forbidden("%s is not a user of this server", invitee)
		}
	}
	if s.InviteBlocked == nil {
		return nil
	}
	blocked, err := s.InviteBlocked(ctx, invitee, ev.Sender)
	if err != nil {
		return fmt.Errorf("invite permission: %w", err)
	}
	if blocked {
		return mxhttp.InviteBlocked("%s does not accept invites from %s", ev.StateKey, ev.Sender)
	}
	return nil
}

// event is GET /event/{eventId}: one event the asking server may see.
func (s *Service) event(w http.ResponseWriter, r *http.Request) (any, error) {
	ev, err := s.rooms.FederationEvent(r.Context(), id.EventID(r.PathValue("eventId")))
	if err != nil {
		return nil, err
	}
	if ok, err := s.rooms.ServerMaySee(r.Context(), AuthenticatedOrigin(r), ev); err != nil || !ok {
		return nil, mxhttp.NotFound("event not found")
	}
	return s.pduResponse([]json.RawMessage{ev.JSON}), nil
}

// maxWalkLimit bounds the events one backfill or get_missing_events
// request answers.
const maxWalkLimit = 100

// visible keeps the events the server may see, as PDU JSON.
func (s *Service) visible(ctx context.Context, server string, evs []*rooms.Event) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	for _, ev := range evs {
		ok, err := s.rooms.ServerMaySee(ctx, server, ev)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ev.JSON)
		}
	}
	return out, nil
}

// backfill is GET /backfill/{roomId}?v=...&limit=: events before (and
// including) v, newest first.
func (s *Service) backfill(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, err := roomParam(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if len(q["v"]) == 0 {
		return nil, mxhttp.MissingParam("v is required")
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 {
		return nil, mxhttp.InvalidParam("limit must be a positive integer")
	}
	origin := AuthenticatedOrigin(r)
	if err := s.roomAccess(r.Context(), origin, roomID); err != nil {
		return nil, err
	}
	var from []id.EventID
	for _, v := range q["v"] {
		from = append(from, id.EventID(v))
	}
	evs, err := s.rooms.Backfill(r.Context(), roomID, from, min(limit, maxWalkLimit))
	if err != nil {
		return nil, err
	}
	pdus, err := s.visible(r.Context(), origin, evs)
	if err != nil {
		return nil, err
	}
	return s.pduResponse(pdus), nil
}

// getMissingEvents is POST /get_missing_events/{roomId}.
func (s *Service) getMissingEvents(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, err := roomParam(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Earliest []id.EventID `json:"earliest_events"`
		Latest   []id.EventID `json:"latest_events"`
		Limit    *int         `json:"limit"`
		MinDepth int64        `json:"min_depth"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Earliest == nil || req.Latest == nil {
		return nil, mxhttp.BadJSON("earliest_events and latest_events are required")
	}
	limit := 10
	if req.Limit != nil {
		limit = *req.Limit
	}
	if limit < 0 || len(req.Latest) > maxWalkLimit || len(req.Earliest) > maxWalkLimit {
		return nil, mxhttp.BadJSON("limit must not be negative, and at most %d events may be named", maxWalkLimit)
	}
	origin := AuthenticatedOrigin(r)
	if err := s.roomAccess(r.Context(), origin, roomID); err != nil {
		return nil, err
	}
	evs, err := s.rooms.MissingEvents(r.Context(), roomID, req.Earliest, req.Latest, min(limit, maxWalkLimit), req.MinDepth)
	if err != nil {
		return nil, err
	}
	pdus, err := s.visible(r.Context(), origin, evs)
	if err != nil {
		return nil, err
	}
	return map[string]any{"events": pdus}, nil
}

// pduResponse is the answer of /event and /backfill.
func (s *Service) pduResponse(pdus []json.RawMessage) map[string]any {
	return map[string]any{"origin": s.serverName, "origin_server_ts": time.Now().UnixMilli(), "pdus": nonNil(pdus)}
}

// stateAt reads the room and event_id parameters of /state and /state_ids
// and checks access; a room whose state is partial here is refused.
func (s *Service) stateAt(r *http.Request) (id.RoomID, id.EventID, error) {
	roomID, err := roomParam(r)
	if err != nil {
		return "", "", err
	}
	evID := id.EventID(r.URL.Query().Get("event_id"))
	if evID == "" {
		return "", "", mxhttp.MissingParam("event_id is required")
	}
	if err := s.roomAccess(r.Context(), AuthenticatedOrigin(r), roomID); err != nil {
		return "", "", err
	}
	if s.rooms.HasPartialState(r.Context(), roomID) {
		// The state here lacks members until the resync completes: refuse
		// rather than answer wrong state, so the asker tries another
		// server (MSC3706).
		return "", "", mxhttp.Forbidden("the room's state is still partial here")
	}
	return roomID, evID, nil
}

// state is GET /state/{roomId}?event_id=: the state before the event and
// its auth chain.
func (s *Service) state(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, evID, err := s.stateAt(r)
	if err != nil {
		return nil, err
	}
	answer, err := s.rooms.StateAnswerBefore(r.Context(), roomID, evID, false)
	if err != nil {
		return nil, err
	}
	s.writeAnswer(r.Context(), w, false, []answerMember{eventsMember("auth_chain", answer.AuthChain), eventsMember("pdus", answer.State)})
	return nil, nil
}

// stateIDs is GET /state_ids/{roomId}?event_id=.
func (s *Service) stateIDs(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, evID, err := s.stateAt(r)
	if err != nil {
		return nil, err
	}
	state, chain, err := s.rooms.StateIDsBefore(r.Context(), roomID, evID)
	if err != nil {
		return nil, err
	}
	if state == nil {
		state = []id.EventID{}
	}
	if chain == nil {
		chain = []id.EventID{}
	}
	return map[string]any{"pdu_ids": state, "auth_chain_ids": chain}, nil
}

// eventAuth is GET /event_auth/{roomId}/{eventId}: the event's auth chain.
func (s *Service) eventAuth(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, err := roomParam(r)
	if err != nil {
		return nil, err
	}
	if err := s.roomAccess(r.Context(), AuthenticatedOrigin(r), roomID); err != nil {
		return nil, err
	}
	ev, err := s.rooms.FederationEvent(r.Context(), id.EventID(r.PathValue("eventId")))
	if err != nil || ev.RoomID != roomID {
		return nil, mxhttp.NotFound("event not found")
	}
	chain, err := s.rooms.AuthChain(r.Context(), []id.EventID{ev.ID})
	if err != nil {
		return nil, err
	}
	return map[string]any{"auth_chain": nonNil(chain)}, nil
}

// timestampToEvent is GET /timestamp_to_event/{roomId}?ts=&dir=.
func (s *Service) timestampToEvent(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, err := roomParam(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		return nil, mxhttp.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		return nil, mxhttp.InvalidParam("dir must be f or b")
	}
	if err := s.roomAccess(r.Context(), AuthenticatedOrigin(r), roomID); err != nil {
		return nil, err
	}
	ev, err := s.rooms.EventNearTS(r.Context(), roomID, ts, dir == "f", s.rooms.LastPos(r.Context(), roomID))
	if err != nil {
		return nil, err
	}
	if ev == nil {
		return nil, mxhttp.NotFound("no event found")
	}
	return map[string]any{"event_id": ev.ID, "origin_server_ts": ev.TS}, nil
}
