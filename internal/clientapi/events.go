package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// readBodyObject reads a JSON object body of at most the event size limit.
func readBodyObject(r *http.Request) (json.RawMessage, error) {
	b, err := mxhttp.ReadBody(r, rooms.MaxEventBytes)
	if err != nil {
		return nil, err
	}
	if err := mxhttp.CheckObject(b); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		b = []byte("{}")
	}
	return b, nil
}

// roomAndType reads the room ID and event type in the path of a send.
func (s *Service) roomAndType(r *http.Request) (id.RoomID, string, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return "", "", err
	}
	evType := r.PathValue("eventType")
	if evType == "" || len(evType) > 255 {
		return "", "", mxhttp.InvalidParam("invalid event type")
	}
	return roomID, evType, nil
}

func (s *Service) sendMessage(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, evType, err := s.roomAndType(r)
	if err != nil {
		return nil, err
	}
	if evType == "m.room.redaction" {
		return nil, mxhttp.InvalidParam("use the /redact endpoint to redact events")
	}
	txn := r.PathValue("txnId")
	delay, delayed, err := s.delayParam(r)
	if err != nil {
		return nil, err
	}
	// A retried delayed send answers the delay ID its first try got, as a
	// retried send answers its event ID, whatever body it carries.
	var txnKey string
	if delayed {
		txnKey = string(mustJSON([]string{"send", string(roomID), evType, txn}))
		if prev := s.Delayed.ByTxn(sess.UserID, sess.DeviceID, txnKey); prev != "" {
			return map[string]any{"delay_id": prev}, nil
		}
	}
	content, err := readBodyObject(r)
	if err != nil {
		return nil, err
	}
	ts, err := tsParam(r, sess)
	if err != nil {
		return nil, err
	}
	if delayed {
		return s.scheduleDelayed(r, sess, delayedEvent(roomID, evType, nil, content, delay, txnKey))
	}
	ev, err := s.rooms.Send(r.Context(), roomID, rooms.Proto{
		Type: evType, Sender: sess.UserID, Content: content, TxnID: txn, DeviceID: sess.DeviceID, TS: ts,
	})
	if err != nil {
		return nil, s.roomErr(r.Context(), err, roomID, sess.UserID)
	}
	return map[string]any{"event_id": ev.ID}, nil
}

// tsParam reads the ts query parameter an application service may give to
// set the event's origin_server_ts (timestamp massaging, for bridged
// history); 0 without one. Users' requests do not have it: theirs is
// ignored.
func tsParam(r *http.Request, sess *accounts.Session) (int64, error) {
	raw := r.URL.Query().Get("ts")
	if raw == "" || sess.AppserviceID == "" {
		return 0, nil
	}
	ts, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ts <= 0 {
		return 0, mxhttp.InvalidParam("ts must be a positive integer of milliseconds")
	}
	return ts, nil
}

// roomErr turns an unknown room into M_FORBIDDEN for users not in it (the
// spec's answer when you may not see a room) and leaves other errors alone.
func (s *Service) roomErr(ctx context.Context, err error, roomID id.RoomID, user id.UserID) error {
	if errors.Is(err, rooms.ErrNoRoom) {
		return mxhttp.Forbidden("you are not in room %s", roomID)
	}
	return err
}

func (s *Service) putState(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, evType, err := s.roomAndType(r)
	if err != nil {
		return nil, err
	}
	sk := r.PathValue("stateKey")
	if len(sk) > 255 {
		return nil, mxhttp.InvalidParam("state key too long")
	}
	content, err := readBodyObject(r)
	if err != nil {
		return nil, err
	}
	if evType == "m.room.member" {
		var c struct {
			Membership string `json:"membership"`
		}
		if json.Unmarshal(content, &c) != nil || c.Membership == "" {
			return nil, mxhttp.BadJSON("membership events need a membership")
		}
		if c.Membership == "invite" {
			if err := s.requireLocalInvitee(id.UserID(sk)); err != nil {
				return nil, err
			}
			if err := s.askAppservicesForUser(r.Context(), id.UserID(sk)); err != nil {
				return nil, err
			}
			if err := s.requireInvitePermission(r.Context(), id.UserID(sk), sess.UserID); err != nil {
				return nil, err
			}
		}
		if c.Membership == "join" && sk == string(sess.UserID) {
			if content, err = s.withJoinAuthoriser(r.Context(), roomID, sess.UserID, content); err != nil {
				return nil, s.roomErr(r.Context(), err, roomID, sess.UserID)
			}
		}
	}
	if evType == "m.room.canonical_alias" && sk == "" {
		if err := s.checkCanonicalAlias(r.Context(), roomID, content); err != nil {
			return nil, err
		}
	}
	delay, delayed, err := s.delayParam(r)
	if err != nil {
		return nil, err
	}
	ts, err := tsParam(r, sess)
	if err != nil {
		return nil, err
	}
	if delayed {
		return s.scheduleDelayed(r, sess, delayedEvent(roomID, evType, &sk, content, delay, ""))
	}
	// Setting state to what it already is does not create an event.
	if cur, err := s.rooms.StateEvent(r.Context(), roomID, evType, sk); err == nil && cur != nil && cur.Sender == sess.UserID {
		if jsonEqual(cur.Content(), content) {
			return map[string]any{"event_id": cur.ID}, nil
		}
	}
	ev, err := s.send(r.Context(), roomID, rooms.Proto{Type: evType, StateKey: &sk, Sender: sess.UserID, Content: content, DeviceID: sess.DeviceID, TS: ts})
	if err != nil {
		return nil, s.roomErr(r.Context(), err, roomID, sess.UserID)
	}
	return map[string]any{"event_id": ev.ID}, nil
}

// joinAuthoriserKey names, in a join under a restricted join rule, the
// user whose server vouched for the join.
const joinAuthoriserKey = "join_authorised_via_users_server"

// withJoinAuthoriser sets the authoriser of user's own join in content as
// /join does: this server vouches for the join, so the value is its own
// choice, never the client's, and a join that needs none (the user already
// joined or invited, a room that is not restricted) carries none.
func (s *Service) withJoinAuthoriser(ctx context.Context, roomID id.RoomID, user id.UserID, content json.RawMessage) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(content, &obj); err != nil {
		return nil, mxhttp.BadJSON("content must be an object")
	}
	via, err := s.rooms.JoinAuthoriser(ctx, roomID, user)
	if err != nil {
		return nil, localJoinRefusal(err)
	}
	if _, named := obj[joinAuthoriserKey]; !named && via == "" {
		return content, nil
	}
	delete(obj, joinAuthoriserKey)
	if via != "" {
		obj[joinAuthoriserKey] = mustJSON(via)
	}
	return json.Marshal(obj)
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func (s *Service) requireVisible(ctx context.Context, user id.UserID, roomID id.RoomID) (int64, error) {
	upTo, _, ok, err := s.rooms.ReadableUpTo(ctx, user, roomID, true)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, mxhttp.Forbidden("you are not allowed to see this room")
	}
	return upTo, nil
}

// visibleRoom reads the room ID in the path and checks that the user may
// see the room, returning how far (as requireVisible does).
func (s *Service) visibleRoom(r *http.Request, sess *accounts.Session) (id.RoomID, int64, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return "", 0, err
	}
	upTo, err := s.requireVisible(r.Context(), sess.UserID, roomID)
	return roomID, upTo, err
}

// eventRoom is visibleRoom for the endpoints about one event, whose spec answers
// 404 when the user may not read the event: a room the user may not see is
// reported as a missing event, saying no more about the room than about it.
func (s *Service) eventRoom(r *http.Request, sess *accounts.Session) (id.RoomID, int64, error) {
	roomID, upTo, err := s.visibleRoom(r, sess)
	if me, ok := mxhttp.AsError(err); ok && me.Code == "M_FORBIDDEN" {
		return "", 0, mxhttp.NotFound("event not found")
	}
	return roomID, upTo, err
}

func (s *Service) client(ev *rooms.Event, sess *accounts.Session) *rooms.ClientEvent {
	return ev.Client(rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID})
}

// clientAt renders a timeline event with the user's membership at it
// (unsigned.membership, spec v1.11), which vis knows.
func (s *Service) clientAt(ev *rooms.Event, sess *accounts.Session, vis *rooms.Visibility) *rooms.ClientEvent {
	return ev.Client(rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID, Membership: vis.MembershipAt(ev)})
}

func (s *Service) getStateEvent(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.visibleRoom(r, sess)
	if err != nil {
		return nil, err
	}
	evType, sk := r.PathValue("eventType"), r.PathValue("stateKey")
	var ev *rooms.Event
	if upTo == math.MaxInt64 {
		ev, err = s.rooms.StateEvent(r.Context(), roomID, evType, sk)
	} else {
		ev, err = s.stateEventAt(r.Context(), roomID, upTo, evType, sk)
	}
	if err != nil {
		return nil, err
	}
	if ev == nil {
		return nil, mxhttp.NotFound("state event not found")
	}
	if r.URL.Query().Get("format") == "event" {
		return s.client(ev, sess), nil
	}
	return ev.Content(), nil
}

func (s *Service) stateEventAt(ctx context.Context, roomID id.RoomID, pos int64, evType, sk string) (*rooms.Event, error) {
	evs, err := s.rooms.StateAtPos(ctx, roomID, pos)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if ev.Type == evType && *ev.StateKey == sk {
			return ev, nil
		}
	}
	return nil, nil
}

// getState is GET /rooms/{roomId}/state. In a room joined with partial
// state it waits (at most MembersWaitForFullState) for the full state,
// which alone names every member.
func (s *Service) getState(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.visibleRoom(r, sess)
	if err != nil {
		return nil, err
	}
	s.awaitFullState(r, roomID)
	evs, err := s.rooms.StateAtPos(r.Context(), roomID, upTo)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(evs))
	for _, ev := range evs {
		out = append(out, s.client(ev, sess))
	}
	return out, nil
}

func (s *Service) getEvent(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.eventRoom(r, sess)
	if err != nil {
		return nil, err
	}
	ev, visible, vis, err := s.eventParam(r, sess, roomID, upTo)
	if err != nil {
		return nil, err
	}
	aggs, err := s.aggregations(r.Context(), sess, visible, []*rooms.Event{ev})
	if err != nil {
		return nil, err
	}
	return aggs.Add(s.clientAt(ev, sess, vis)), nil
}

func (s *Service) getMembers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if roomID, err := mxhttp.RoomIDParam(r); err == nil && s.rooms.Membership(sess.UserID, roomID) == "join" {
		s.awaitFullState(r, roomID)
	}
	roomID, upTo, err := s.visibleRoom(r, sess)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	at, hasAt, err := queryPageToken(q, "at")
	if err != nil {
		return nil, err
	}
	if hasAt {
		upTo = min(upTo, at.streamPos())
	}
	evs, err := s.rooms.StateAtPos(r.Context(), roomID, upTo)
	if err != nil {
		return nil, err
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	out := []any{}
	for _, ev := range evs {
		if ev.Type != "m.room.member" {
			continue
		}
		m := ev.Membership()
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		out = append(out, s.client(ev, sess))
	}
	return map[string]any{"chunk": out}, nil
}

// MembersWaitForFullState bounds how long /members, /joined_members and
// /state wait for a room joined with partial state to get its full state; after
// that they answer the members known so far.
var MembersWaitForFullState = 30 * time.Second

// awaitFullState waits, at most MembersWaitForFullState, until the room's
// state is complete (it is partial after a join with members omitted).
func (s *Service) awaitFullState(r *http.Request, roomID id.RoomID) {
	ctx, cancel := context.WithTimeout(r.Context(), MembersWaitForFullState)
	defer cancel()
	s.rooms.AwaitFullState(ctx, roomID)
}

func (s *Service) getJoinedMembers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	if s.rooms.Membership(sess.UserID, roomID) != "join" {
		return nil, mxhttp.Forbidden("you are not in this room")
	}
	s.awaitFullState(r, roomID)
	evs, err := s.rooms.CurrentState(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	// Both fields are always present, null when the member event has none,
	// as Synapse answers and Complement's TestRoomState checks; clients read
	// null as absent (spectest's nullables amend the schema to match).
	type member struct {
		DisplayName *string `json:"display_name"`
		AvatarURL   *string `json:"avatar_url"`
	}
	joined := map[string]member{}
	for _, ev := range evs {
		if ev.Type != "m.room.member" || ev.Membership() != "join" {
			continue
		}
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		json.Unmarshal(ev.Content(), &c)
		joined[*ev.StateKey] = member{DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
	}
	return map[string]any{"joined": joined}, nil
}

// The page sizes of /messages (also the most /context serves).
const (
	defaultMessagesLimit = 10
	maxMessagesLimit     = 1000
)

func (s *Service) getMessages(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.visibleRoom(r, sess)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		return nil, mxhttp.InvalidParam("dir must be b or f")
	}
	limit, err := queryLimit(q, defaultMessagesLimit, maxMessagesLimit)
	if err != nil {
		return nil, err
	}
	filter, err := queryFilter(q)
	if err != nil {
		return nil, err
	}
	if filter != nil && filter.Limit != nil {
		limit = min(max(*filter.Limit, 0), maxMessagesLimit)
	}
	visible := min(upTo, s.db.Visible())
	from, hasFrom, err := queryPageToken(q, "from")
	if err != nil {
		return nil, err
	}
	to, hasTo, err := queryPageToken(q, "to")
	if err != nil {
		return nil, err
	}
	page, err := s.readPage(ctx, roomID, dir == "b", from, hasFrom, to, hasTo, visible, limit)
	if err != nil {
		return nil, err
	}
	evs := page.events
	// The page boundary comes from what was read, before the history
	// visibility filter drops events.
	read := evs
	vis, err := s.rooms.Visibility(ctx, roomID, sess.UserID)
	if err != nil {
		return nil, err
	}
	evs = vis.FilterVisible(evs)
	aggs, err := s.aggregations(ctx, sess, upTo, evs)
	if err != nil {
		return nil, err
	}
	chunk := make([]any, 0, len(evs))
	var stateNeeded map[id.UserID]bool
	lazy := filter != nil && filter.LazyLoadMembers
	if lazy {
		stateNeeded = map[id.UserID]bool{}
	}
	for _, ev := range evs {
		if !filter.AllowsEvent(ev) {
			continue
		}
		chunk = append(chunk, aggs.Add(s.clientAt(ev, sess, vis)))
		if lazy {
			stateNeeded[ev.Sender] = true
		}
	}
	resp := map[string]any{"chunk": chunk, "start": page.start}
	// A page that read events ends with a token past them, even when it
	// reached the start (or to): the next page is then empty and without
	// end, which is where clients stop. Synapse answers so, and Complement's
	// TestRoomImageRoundtrip wants end on a filtered page shorter than its
	// limit.
	if len(read) > 0 {
		resp["end"] = page.end(read[len(read)-1])
	}
	if lazy && len(stateNeeded) > 0 {
		state, err := s.rooms.CurrentState(ctx, roomID)
		if err != nil {
			return nil, err
		}
		members := []any{}
		for _, st := range state {
			if st.Type == "m.room.member" && stateNeeded[id.UserID(*st.StateKey)] {
				members = append(members, s.client(st, sess))
			}
		}
		resp["state"] = members
	}
	return resp, nil
}

func (s *Service) redact(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	content, err := readBodyObject(r)
	if err != nil {
		return nil, err
	}
	target := id.EventID(r.PathValue("eventId"))
	ev, err := s.rooms.Send(r.Context(), roomID, rooms.Proto{
		Type: "m.room.redaction", Sender: sess.UserID, Content: content, Redacts: target,
		TxnID: r.PathValue("txnId"), DeviceID: sess.DeviceID,
	})
	if err != nil {
		return nil, s.roomErr(r.Context(), err, roomID, sess.UserID)
	}
	return map[string]any{"event_id": ev.ID}, nil
}
