package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

type createRoomRequest struct {
	Visibility                string            `json:"visibility"`
	RoomAliasName             *string           `json:"room_alias_name"`
	Name                      *string           `json:"name"`
	Topic                     *string           `json:"topic"`
	Invite                    []id.UserID       `json:"invite"`
	Invite3PID                []json.RawMessage `json:"invite_3pid"`
	RoomVersion               id.RoomVersion    `json:"room_version"`
	CreationContent           map[string]any    `json:"creation_content"`
	InitialState              []stateEventReq   `json:"initial_state"`
	Preset                    string            `json:"preset"`
	IsDirect                  bool              `json:"is_direct"`
	PowerLevelContentOverride map[string]any    `json:"power_level_content_override"`
}

type stateEventReq struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

func str(s string) *string { return &s }

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// creatorMember is the content of the join of a room's creator (or
// upgrader): with the user's display name and avatar where set.
func (s *Service) creatorMember(ctx context.Context, user id.UserID) map[string]any {
	member := map[string]any{"membership": "join"}
	name, avatar := s.accounts.DisplayName(ctx, user)
	if name != "" {
		member["displayname"] = name
	}
	if avatar != "" {
		member["avatar_url"] = avatar
	}
	return member
}

func (s *Service) createRoom(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req createRoomRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	version := req.RoomVersion
	if version == "" {
		version = s.defaultVersion
	}
	if !rooms.IsSupported(version) {
		return nil, mxhttp.UnsupportedRoomV("room version %q is not supported", version)
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return nil, mxhttp.InvalidParam("visibility must be public or private")
	}
	preset := req.Preset
	if preset == "" {
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	}
	joinRule, history, guest := "invite", "shared", "can_join"
	switch preset {
	case "private_chat", "trusted_private_chat":
	case "public_chat":
		joinRule, guest = "public", "forbidden"
	default:
		return nil, mxhttp.InvalidParam("unknown preset %q", preset)
	}
	if len(req.Invite) > 100 || len(req.InitialState) > 100 {
		return nil, mxhttp.InvalidParam("too many invites or initial state events")
	}
	for _, u := range req.Invite {
		if err := s.requireLocalInvitee(u); err != nil {
			return nil, err
		}
		if err := s.askAppservicesForUser(ctx, u); err != nil {
			return nil, err
		}
		if err := s.requireInvitePermission(ctx, u, sess.UserID); err != nil {
			return nil, err
		}
	}
	// A bad or taken alias is refused before anything is created.
	var alias id.RoomAlias
	if req.RoomAliasName != nil {
		var err error
		if alias, err = s.localAlias(*req.RoomAliasName); err != nil {
			return nil, err
		}
		if err := s.checkAliasNotExclusive(alias, sess); err != nil {
			return nil, err
		}
		if roomID, err := s.resolveLocalAlias(ctx, alias); err != nil {
			return nil, err
		} else if roomID != "" {
			return nil, mxhttp.RoomInUse("room alias %s is already taken", alias)
		}
	}
	if version.PrivilegedRoomCreators() && preset == "trusted_private_chat" && len(req.Invite) > 0 {
		if req.CreationContent == nil {
			req.CreationContent = map[string]any{}
		}
		req.CreationContent["additional_creators"] = withInvitees(req.CreationContent["additional_creators"], req.Invite)
	}

	var evs []rooms.Proto
	add := func(typ string, sk *string, content any) {
		evs = append(evs, rooms.Proto{Type: typ, StateKey: sk, Sender: sess.UserID, Content: mustJSON(content)})
	}
	member := s.creatorMember(ctx, sess.UserID)
	add("m.room.member", str(string(sess.UserID)), member)

	pl := map[string]any{
		"users":          map[string]int{string(sess.UserID): 100},
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         50,
		"events": map[string]int{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		},
		"notifications": map[string]int{"room": 50},
	}
	if version.PrivilegedRoomCreators() {
		// Creators have unlimited power in v12+ and must not be listed;
		// the spec wants the tombstone above state_default and every
		// other admin (MSC4289 suggests 150), so that only creators can
		// upgrade the room by default.
		pl["users"] = map[string]int{}
		pl["events"].(map[string]int)["m.room.tombstone"] = 150
	}
	if preset != "public_chat" {
		// In a private chat every member may invite, as in Synapse's
		// presets; elsewhere (a public or restricted room) it takes
		// moderator power.
		pl["invite"] = 0
	}
	if preset == "trusted_private_chat" {
		users := pl["users"].(map[string]int)
		for _, u := range req.Invite {
			if !version.PrivilegedRoomCreators() {
				users[string(u)] = 100
			}
		}
	}
	for k, v := range req.PowerLevelContentOverride {
		pl[k] = v
	}
	add("m.room.power_levels", str(""), pl)
	if alias != "" {
		add("m.room.canonical_alias", str(""), map[string]any{"alias": alias})
	}
	// initial_state takes precedence over the preset: a preset event whose
	// type the client also gives in initial_state is left out.
	inInitial := func(typ string) bool {
		for _, st := range req.InitialState {
			if st.Type == typ && st.StateKey == "" {
				return true
			}
		}
		return false
	}
	if !inInitial("m.room.join_rules") {
		add("m.room.join_rules", str(""), map[string]any{"join_rule": joinRule})
	}
	if !inInitial("m.room.history_visibility") {
		add("m.room.history_visibility", str(""), map[string]any{"history_visibility": history})
	}
	if guest != "" && preset != "public_chat" && !inInitial("m.room.guest_access") {
		add("m.room.guest_access", str(""), map[string]any{"guest_access": guest})
	}
	for _, st := range req.InitialState {
		if st.Type == "" {
			return nil, mxhttp.BadJSON("initial_state events need a type")
		}
		if st.Type == "m.room.create" || st.Type == "m.room.member" {
			return nil, mxhttp.BadJSON("initial_state must not contain %s", st.Type)
		}
		if len(st.Content) == 0 || st.Content[0] != '{' {
			return nil, mxhttp.BadJSON("initial_state content must be an object")
		}
		sk := st.StateKey
		evs = append(evs, rooms.Proto{Type: st.Type, StateKey: &sk, Sender: sess.UserID, Content: st.Content})
	}
	if req.Name != nil {
		add("m.room.name", str(""), map[string]any{"name": *req.Name})
	}
	if req.Topic != nil {
		add("m.room.topic", str(""), topicContent(*req.Topic))
	}
	var remoteInvites []rooms.Proto
	for _, u := range req.Invite {
		content := map[string]any{"membership": "invite"}
		if req.IsDirect {
			content["is_direct"] = true
		}
		if name, avatar := s.accounts.DisplayName(ctx, u); name != "" {
			content["displayname"] = name
			if avatar != "" {
				content["avatar_url"] = avatar
			}
		}
		p := rooms.Proto{Type: "m.room.member", StateKey: str(string(u)), Sender: sess.UserID, Content: mustJSON(content)}
		if s.remoteInvite(p) {
			// Sent once the room exists, for the invitee's server to
			// countersign.
			remoteInvites = append(remoteInvites, p)
			continue
		}
		evs = append(evs, p)
	}
	roomID, _, err := s.rooms.CreateRoom(ctx, version, sess.UserID, req.CreationContent, evs)
	if err != nil {
		return nil, err
	}
	for _, p := range remoteInvites {
		if _, err := s.send(ctx, roomID, p); err != nil {
			s.log.Warn("createRoom: an invite of a user of another server was refused", "room_id", roomID, "user_id", *p.StateKey, "err", err)
		}
	}
	if alias != "" {
		if err := s.createAlias(ctx, alias, roomID, sess.UserID); err != nil {
			return nil, err
		}
	}
	if req.Visibility == "public" {
		if err := s.setPublished(ctx, roomID, true); err != nil {
			return nil, err
		}
	}
	return map[string]any{"room_id": roomID}, nil
}

// topicContent is the m.room.topic content createRoom writes for a plain
// text topic: the spec (v1.15) has the text both in topic and as the
// text/plain representation of the m.topic content block.
func topicContent(topic string) map[string]any {
	return map[string]any{
		"topic": topic,
		"m.topic": map[string]any{
			"m.text": []map[string]any{{"mimetype": "text/plain", "body": topic}},
		},
	}
}

// membership sends an m.room.member event for target.
func (s *Service) membership(r *http.Request, sess *accounts.Session, roomID id.RoomID, target id.UserID, membership, reason string, extra map[string]any) (*rooms.Event, error) {
	content := map[string]any{"membership": membership}
	if reason != "" {
		content["reason"] = reason
	}
	for k, v := range extra {
		content[k] = v
	}
	if membership == "join" || membership == "invite" || membership == "knock" {
		s.addProfile(r.Context(), target, content)
	}
	sk := string(target)
	return s.send(r.Context(), roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: sess.UserID, Content: mustJSON(content)})
}

// addProfile adds the user's display name and avatar to the content of a
// join, invite or knock of theirs, unless it names a display name already
// (a per-room profile): other members, on this server and others, know the
// user's profile from it.
func (s *Service) addProfile(ctx context.Context, user id.UserID, content map[string]any) {
	if _, ok := content["displayname"]; ok {
		return
	}
	name, avatar := s.accounts.DisplayName(ctx, user)
	if name != "" {
		content["displayname"] = name
	}
	if avatar != "" {
		content["avatar_url"] = avatar
	}
}

type membershipRequest struct {
	UserID id.UserID `json:"user_id"`
	Reason string    `json:"reason"`
}

// roomIDAndBody reads the room ID in the path, then decodes the JSON body
// into v.
func (s *Service) roomIDAndBody(r *http.Request, v any) (id.RoomID, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return "", err
	}
	return roomID, mxhttp.DecodeJSON(r, v)
}

func (s *Service) joinRoomByID(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	t, err := s.resolveTarget(r, string(roomID))
	if err != nil {
		return nil, err
	}
	return s.join(r, sess, t)
}

func (s *Service) join(r *http.Request, sess *accounts.Session, t target) (any, error) {
	roomID := t.roomID
	// Keys of the body other than the spec's are copied into the member
	// event's content, as clients that set per-room profile fields this way
	// expect (the spec allows extra content keys on any event).
	var body map[string]json.RawMessage
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	var reason string
	if raw, given := body["reason"]; given && json.Unmarshal(raw, &reason) != nil {
		return nil, mxhttp.BadJSON("reason must be a string")
	}
	extra := map[string]any{}
	for k, v := range body {
		switch k {
		case "reason", "third_party_signed", "membership", joinAuthoriserKey:
		default:
			extra[k] = v
		}
	}
	// A user joined already stays so. While the room's state is partial
	// here, this node cannot tell whether the room lets the user in (their
	// membership may be among the state it lacks): the join goes through a
	// resident server, as one of a room this node is not in does. A ban it
	// knows of refuses the join at once.
	m := s.rooms.Membership(sess.UserID, roomID)
	if m == "join" {
		return map[string]any{"room_id": roomID}, nil
	}
	partial := s.remoteRooms != nil && s.rooms.HasPartialState(r.Context(), roomID)
	if partial && m == "ban" {
		return nil, mxhttp.Forbidden("you are banned from this room")
	}
	if s.remoteRooms != nil && (partial || !s.inRoomHere(r.Context(), roomID)) {
		if m == "invite" || m == "knock" {
			t.via = append(s.outOfRoomVia(r.Context(), sess.UserID, roomID), t.via...)
		}
		if via := s.remoteVia(r.Context(), t); len(via) > 0 {
			if reason != "" {
				extra["reason"] = reason
			}
			s.addProfile(r.Context(), sess.UserID, extra)
			return s.joinRemote(r.Context(), sess.UserID, roomID, via, extra)
		}
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return nil, mxhttp.NotFound("room not found (joining rooms on other servers needs federation)")
	}
	// A restricted room lets in the members of the rooms it allows, with a
	// local member who may invite named as the join's authoriser; when no
	// member here may, the join goes through another server of the room,
	// whose member can authorise it.
	via, err := s.rooms.JoinAuthoriser(r.Context(), roomID, sess.UserID)
	if (errors.Is(err, rooms.ErrNoLocalAuthoriser) || errors.Is(err, rooms.ErrAllowedRoomsUnknown)) && s.remoteRooms != nil {
		// This node is in the room, so the servers it sees there are the
		// room's now, not ones it last knew: any may hold an authoriser.
		t.named = false
		if servers := s.remoteVia(r.Context(), t); len(servers) > 0 {
			if reason != "" {
				extra["reason"] = reason
			}
			s.addProfile(r.Context(), sess.UserID, extra)
			return s.joinRemote(r.Context(), sess.UserID, roomID, servers, extra)
		}
	}
	if err != nil {
		return nil, localJoinRefusal(err)
	}
	if via != "" {
		extra[joinAuthoriserKey] = via
	}
	if _, err := s.membership(r, sess, roomID, sess.UserID, "join", reason, extra); err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID}, nil
}

func (s *Service) joinRoomByIDOrAlias(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	t, err := s.resolveTarget(r, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	return s.join(r, sess, t)
}

func (s *Service) invite(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		membershipRequest
		IDServer string `json:"id_server"` // the third-party invite form
	}
	roomID, err := s.roomIDAndBody(r, &req)
	if err != nil {
		return nil, err
	}
	if req.UserID == "" && req.IDServer != "" {
		return nil, errThirdPartyInvite
	}
	if req.UserID == "" {
		return nil, mxhttp.MissingParam("missing user_id")
	}
	if err := s.requireLocalInvitee(req.UserID); err != nil {
		return nil, err
	}
	if err := s.askAppservicesForUser(r.Context(), req.UserID); err != nil {
		return nil, err
	}
	if err := s.requireInvitePermission(r.Context(), req.UserID, sess.UserID); err != nil {
		return nil, err
	}
	switch s.rooms.Membership(req.UserID, roomID) {
	case "join":
		return nil, mxhttp.Forbidden("user is already in the room")
	case "ban":
		return nil, mxhttp.Forbidden("user is banned from the room")
	}
	if _, err := s.membership(r, sess, roomID, req.UserID, "invite", req.Reason, nil); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) leave(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req membershipRequest
	roomID, err := s.roomIDAndBody(r, &req)
	if err != nil {
		return nil, err
	}
	switch m := s.rooms.Membership(sess.UserID, roomID); m {
	case "leave":
		// Already left: leaving is idempotent (the spec names no error
		// for it, and clients and Complement's cleanup leave twice).
		return mxhttp.Empty, nil
	case "":
		if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
			return nil, mxhttp.NotFound("room not found")
		}
		return nil, mxhttp.Forbidden("you are not in this room")
	case "invite", "knock":
		// An invite to, or a knock on, a room this node is not in is
		// withdrawn through the server that holds the room. A room of this
		// node's own whose local members all left (an invite of a local
		// user, the inviter gone) has no other server to ask: its state is
		// here, and the leave is made here.
		if s.remoteRooms != nil && !s.inRoomHere(r.Context(), roomID) {
			via := s.otherServers(s.outOfRoomVia(r.Context(), sess.UserID, roomID))
			if _, err := s.rooms.Version(r.Context(), roomID); len(via) > 0 || err != nil {
				content := map[string]any{}
				if req.Reason != "" {
					content["reason"] = req.Reason
				}
				if err := s.remoteRooms.LeaveRemote(r.Context(), sess.UserID, roomID, via, content); err != nil {
					return nil, err
				}
				return mxhttp.Empty, nil
			}
		}
	}
	if _, err := s.membership(r, sess, roomID, sess.UserID, "leave", req.Reason, nil); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

// moderate implements kick, ban and unban.
func (s *Service) moderate(membership string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		var req membershipRequest
		roomID, err := s.roomIDAndBody(r, &req)
		if err != nil {
			return nil, err
		}
		if req.UserID == "" {
			return nil, mxhttp.MissingParam("missing user_id")
		}
		if _, _, err := req.UserID.Parse(); err != nil {
			return nil, mxhttp.InvalidParam("invalid user_id")
		}
		current := s.rooms.Membership(req.UserID, roomID)
		target := membership
		switch membership {
		case "kick":
			if current != "join" && current != "invite" && current != "knock" {
				return nil, mxhttp.Forbidden("user is not in the room")
			}
			target = "leave"
		case "unban":
			if current != "ban" {
				return nil, mxhttp.Forbidden("user is not banned")
			}
			target = "leave"
		}
		if _, err := s.membership(r, sess, roomID, req.UserID, target, req.Reason, nil); err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	}
}

func (s *Service) joinedRooms(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	joined := s.rooms.JoinedRooms(sess.UserID)
	if joined == nil {
		joined = []id.RoomID{}
	}
	return map[string]any{"joined_rooms": joined}, nil
}

// withInvitees returns the additional_creators of creation_content with
// the invitees of a trusted_private_chat appended, each user once, as the
// spec asks. Content that is not an array of strings is returned as is, for
// the room engine to refuse.
func withInvitees(additional any, invite []id.UserID) any {
	if additional == nil {
		return invite
	}
	list, ok := additional.([]any)
	if !ok {
		return additional
	}
	seen := map[string]bool{}
	for _, c := range list {
		s, ok := c.(string)
		if !ok {
			return additional
		}
		seen[s] = true
	}
	for _, u := range invite {
		if !seen[string(u)] {
			seen[string(u)] = true
			list = append(list, string(u))
		}
	}
	return list
}

// localJoinRefusal is the client's answer when a restricted join cannot be
// authorised here: 403, where make_join answers another server 400
// (M_UNABLE_TO_GRANT_JOIN, M_UNABLE_TO_AUTHORISE_JOIN) so that it tries
// elsewhere.
func localJoinRefusal(err error) error {
	for _, e := range []*mxhttp.Error{rooms.ErrNoLocalAuthoriser, rooms.ErrAllowedRoomsUnknown} {
		if errors.Is(err, e) {
			return mxhttp.Forbidden("%s", e.Message)
		}
	}
	return err
}
