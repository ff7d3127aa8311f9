package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

func (s *Service) roomRoutes(mux *http.ServeMux) {
	const v1, v2 = "/_synapse/admin/v1", "/_synapse/admin/v2"
	mux.HandleFunc("GET "+v1+"/rooms", s.admin(s.listRooms))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}", s.admin(s.getRoom))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/members", s.admin(s.roomMembers))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/state", s.admin(s.roomState))
	mux.HandleFunc("DELETE "+v1+"/rooms/{roomId}", s.admin(s.deleteRoomV1))
	mux.HandleFunc("DELETE "+v2+"/rooms/{roomId}", s.admin(s.deleteRoomV2))
	// /v2/rooms/{roomId}/delete_status and /v2/rooms/delete_status/{deleteId}
	// overlap as patterns, so one handler serves both.
	mux.HandleFunc("GET "+v2+"/rooms/{a}/{b}", s.admin(s.deleteStatus))
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/block", s.admin(s.getBlock))
	mux.HandleFunc("PUT "+v1+"/rooms/{roomId}/block", s.admin(s.putBlock))
}

// roomDetails is what the admin API tells about a room, read from its
// current state.
type roomDetails struct {
	RoomID             id.RoomID      `json:"room_id"`
	Name               *string        `json:"name"`
	Topic              *string        `json:"topic"`
	Avatar             *string        `json:"avatar"`
	CanonicalAlias     *string        `json:"canonical_alias"`
	JoinedMembers      int            `json:"joined_members"`
	JoinedLocalMembers int            `json:"joined_local_members"`
	Version            id.RoomVersion `json:"version"`
	Creator            id.UserID      `json:"creator"`
	Encryption         *string        `json:"encryption"`
	Federatable        bool           `json:"federatable"`
	Public             bool           `json:"public"`
	JoinRules          *string        `json:"join_rules"`
	GuestAccess        *string        `json:"guest_access"`
	HistoryVisibility  *string        `json:"history_visibility"`
	StateEvents        int            `json:"state_events"`
	RoomType           *string        `json:"room_type"`
}

func contentString(ev *rooms.Event, field string) *string {
	var c map[string]any
	json.Unmarshal(ev.Content(), &c)
	if v, ok := c[field].(string); ok {
		return &v
	}
	return nil
}

func (s *Service) roomDetails(ctx context.Context, rec rooms.RoomRecord) (*roomDetails, error) {
	state, err := s.rooms.CurrentState(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	d := &roomDetails{RoomID: rec.ID, Version: rec.Version, Creator: rec.Creator, Public: rec.Published, Federatable: true, StateEvents: len(state)}
	// The string details, each the content field of a state event.
	fields := map[string]struct {
		key string
		dst **string
	}{
		"m.room.name":               {"name", &d.Name},
		"m.room.topic":              {"topic", &d.Topic},
		"m.room.avatar":             {"url", &d.Avatar},
		"m.room.canonical_alias":    {"alias", &d.CanonicalAlias},
		"m.room.encryption":         {"algorithm", &d.Encryption},
		"m.room.join_rules":         {"join_rule", &d.JoinRules},
		"m.room.guest_access":       {"guest_access", &d.GuestAccess},
		"m.room.history_visibility": {"history_visibility", &d.HistoryVisibility},
		"m.room.create":             {"type", &d.RoomType},
	}
	for _, ev := range state {
		if *ev.StateKey != "" && ev.Type != "m.room.member" {
			continue
		}
		if f, ok := fields[ev.Type]; ok {
			*f.dst = contentString(ev, f.key)
		}
		switch ev.Type {
		case "m.room.member":
			if ev.Membership() == "join" {
				d.JoinedMembers++
				if _, hs, _ := id.UserID(*ev.StateKey).Parse(); hs == s.serverName {
					d.JoinedLocalMembers++
				}
			}
		case "m.room.create":
			var c struct {
				Federate *bool `json:"m.federate"`
			}
			json.Unmarshal(ev.Content(), &c)
			d.Federatable = c.Federate == nil || *c.Federate
		}
	}
	return d, nil
}

func strOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// byString orders rooms by a string detail, absent ones first.
func byString(f func(*roomDetails) *string) func(a, b *roomDetails) int {
	return func(a, b *roomDetails) int { return strings.Compare(strOr(f(a)), strOr(f(b))) }
}

var roomOrders = map[string]func(a, b *roomDetails) int{
	"name":                 byString(func(d *roomDetails) *string { return d.Name }),
	"canonical_alias":      byString(func(d *roomDetails) *string { return d.CanonicalAlias }),
	"joined_members":       func(a, b *roomDetails) int { return cmp.Compare(a.JoinedMembers, b.JoinedMembers) },
	"joined_local_members": func(a, b *roomDetails) int { return cmp.Compare(a.JoinedLocalMembers, b.JoinedLocalMembers) },
	"version":              func(a, b *roomDetails) int { return strings.Compare(string(a.Version), string(b.Version)) },
	"creator":              func(a, b *roomDetails) int { return strings.Compare(string(a.Creator), string(b.Creator)) },
	"encryption":           byString(func(d *roomDetails) *string { return d.Encryption }),
	"federatable":          func(a, b *roomDetails) int { return cmpBool(a.Federatable, b.Federatable) },
	"public":               func(a, b *roomDetails) int { return cmpBool(a.Public, b.Public) },
	"join_rules":           byString(func(d *roomDetails) *string { return d.JoinRules }),
	"guest_access":         byString(func(d *roomDetails) *string { return d.GuestAccess }),
	"history_visibility":   byString(func(d *roomDetails) *string { return d.HistoryVisibility }),
	"state_events":         func(a, b *roomDetails) int { return cmp.Compare(a.StateEvents, b.StateEvents) },
}

// listRooms answers GET /_synapse/admin/v1/rooms: from, limit, order_by
// (default name; the old "size" and "alphabetical" too), dir and
// search_term (matched against the name, canonical alias and room ID).
func (s *Service) listRooms(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	order := q.Get("order_by")
	switch order {
	case "":
		order = "name"
	case "alphabetical":
		order = "name"
	case "size":
		order = "joined_members"
	}
	less, ok := roomOrders[order]
	if !ok {
		return nil, mxhttp.InvalidParam("unknown order_by %q", order)
	}
	dir := q.Get("dir")
	if dir != "" && dir != "f" && dir != "b" {
		return nil, mxhttp.InvalidParam("dir must be f or b")
	}
	term := strings.ToLower(q.Get("search_term"))
	recs, err := s.rooms.RoomRecords(r.Context())
	if err != nil {
		return nil, err
	}
	var matched []*roomDetails
	for _, rec := range recs {
		d, err := s.roomDetails(r.Context(), rec)
		if err != nil {
			s.log.Warn("admin room list: skip room", "room_id", rec.ID, "err", err)
			continue
		}
		if term != "" && !strings.Contains(strings.ToLower(strOr(d.Name)), term) &&
			!strings.Contains(strings.ToLower(strOr(d.CanonicalAlias)), term) && !strings.Contains(strings.ToLower(string(d.RoomID)), term) {
			continue
		}
		matched = append(matched, d)
	}
	slices.SortStableFunc(matched, func(a, b *roomDetails) int {
		c := less(a, b)
		if c == 0 {
			c = strings.Compare(string(a.RoomID), string(b.RoomID))
		}
		if dir == "b" {
			return -c
		}
		return c
	})
	part, next := window(matched, from, limit)
	resp := map[string]any{"rooms": part, "offset": from, "total_rooms": len(matched)}
	if next >= 0 {
		resp["next_batch"] = next
	}
	if from > 0 {
		resp["prev_batch"] = max(from-limit, 0)
	}
	return resp, nil
}

func (s *Service) roomRecord(r *http.Request) (rooms.RoomRecord, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return rooms.RoomRecord{}, err
	}
	recs, err := s.rooms.RoomRecords(r.Context())
	if err != nil {
		return rooms.RoomRecord{}, err
	}
	for _, rec := range recs {
		if rec.ID == roomID {
			return rec, nil
		}
	}
	return rooms.RoomRecord{}, mxhttp.NotFound("room not found")
}

func (s *Service) getRoom(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	rec, err := s.roomRecord(r)
	if err != nil {
		return nil, err
	}
	d, err := s.roomDetails(r.Context(), rec)
	if err != nil {
		return nil, err
	}
	return struct {
		*roomDetails
		Forgotten bool `json:"forgotten"`
	}{d, false}, nil
}

// paramState returns the current state of the room named in the path.
func (s *Service) paramState(r *http.Request) ([]*rooms.Event, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	return s.rooms.CurrentState(r.Context(), roomID)
}

func (s *Service) roomMembers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	state, err := s.paramState(r)
	if err != nil {
		return nil, err
	}
	members := []id.UserID{}
	for _, ev := range state {
		if ev.Type == "m.room.member" && ev.Membership() == "join" {
			members = append(members, id.UserID(*ev.StateKey))
		}
	}
	slices.Sort(members)
	return map[string]any{"members": members, "total": len(members)}, nil
}

func (s *Service) roomState(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	state, err := s.paramState(r)
	if err != nil {
		return nil, err
	}
	out := make([]*rooms.ClientEvent, 0, len(state))
	for _, ev := range state {
		out = append(out, ev.Client(rooms.ClientOptions{}))
	}
	return map[string]any{"state": out}, nil
}

type deleteRoomRequest struct {
	NewRoomUserID id.UserID `json:"new_room_user_id"`
	RoomName      string    `json:"room_name"`
	Message       string    `json:"message"`
	Block         bool      `json:"block"`
	Purge         *bool     `json:"purge"`
	ForcePurge    bool      `json:"force_purge"`
}

// ShutdownResult is what deleting a room did.
type ShutdownResult struct {
	KickedUsers       []id.UserID    `json:"kicked_users"`
	FailedToKickUsers []id.UserID    `json:"failed_to_kick_users"`
	LocalAliases      []id.RoomAlias `json:"local_aliases"`
	NewRoomID         *id.RoomID     `json:"new_room_id"`
}

type deleteStatus struct {
	DeleteID string         `json:"delete_id"`
	RoomID   id.RoomID      `json:"-"`
	Status   string         `json:"status"`
	Error    string         `json:"error,omitempty"`
	Result   ShutdownResult `json:"shutdown_room"`
}

// DeleteRoom shuts a room down: optionally blocks it, makes every local
// member leave, and (with purge) removes it from the node. When members
// could not be removed the purge is refused unless force is set.
func (s *Service) DeleteRoom(ctx context.Context, admin id.UserID, roomID id.RoomID, block, purge, force bool, reason string) (*ShutdownResult, error) {
	res := &ShutdownResult{KickedUsers: []id.UserID{}, FailedToKickUsers: []id.UserID{}, LocalAliases: []id.RoomAlias{}}
	if block {
		if err := s.setBlocked(ctx, roomID, admin, true); err != nil {
			return nil, err
		}
	}
	if _, err := s.rooms.Version(ctx, roomID); err != nil {
		if block {
			return res, nil // blocking a room the node does not know is fine
		}
		return nil, err
	}
	aliases, err := s.rooms.LocalAliases(ctx, roomID)
	if err != nil {
		return nil, err
	}
	res.LocalAliases = aliases
	state, err := s.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	content := map[string]string{"membership": "leave"}
	if reason != "" {
		content["reason"] = reason
	}
	body, _ := json.Marshal(content)
	for _, ev := range state {
		if ev.Type != "m.room.member" {
			continue
		}
		m := ev.Membership()
		user := id.UserID(*ev.StateKey)
		if _, hs, _ := user.Parse(); hs != s.serverName || (m != "join" && m != "invite" && m != "knock") {
			continue
		}
		sk := string(user)
		if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: user, Content: body}); err != nil {
			s.log.Warn("room shutdown: remove member", "room_id", roomID, "user_id", user, "err", err)
			res.FailedToKickUsers = append(res.FailedToKickUsers, user)
			continue
		}
		res.KickedUsers = append(res.KickedUsers, user)
	}
	if purge {
		if len(res.FailedToKickUsers) > 0 && !force {
			return nil, mxhttp.InvalidParam("some members could not be removed; use force_purge to purge anyway")
		}
		if err := s.rooms.Purge(ctx, roomID); err != nil {
			return nil, err
		}
		err := s.db.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, "DELETE FROM server_notice_rooms WHERE room_id = $1", roomID)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("forget notices room: %w", err)
		}
	}
	s.log.Info("room deleted", "admin", admin, "room_id", roomID, "block", block, "purge", purge, "kicked", len(res.KickedUsers))
	return res, nil
}

func (s *Service) decodeDelete(r *http.Request) (id.RoomID, *deleteRoomRequest, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return "", nil, err
	}
	var req deleteRoomRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return "", nil, err
	}
	if req.NewRoomUserID != "" {
		return "", nil, mxhttp.InvalidParam("new_room_user_id is not supported: members are removed without a replacement room")
	}
	return roomID, &req, nil
}

func (s *Service) deleteRoomV1(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, req, err := s.decodeDelete(r)
	if err != nil {
		return nil, err
	}
	purge := req.Purge == nil || *req.Purge
	return s.DeleteRoom(r.Context(), sess.UserID, roomID, req.Block, purge, req.ForcePurge, req.Message)
}

// deleteRoomV2 runs the deletion at once and keeps its status for the
// delete_status endpoints.
func (s *Service) deleteRoomV2(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, req, err := s.decodeDelete(r)
	if err != nil {
		return nil, err
	}
	purge := req.Purge == nil || *req.Purge
	st := &deleteStatus{DeleteID: accounts.RandomToken("", 12), RoomID: roomID, Status: "complete"}
	res, err := s.DeleteRoom(r.Context(), sess.UserID, roomID, req.Block, purge, req.ForcePurge, req.Message)
	if err != nil {
		me, _ := mxhttp.AsError(err)
		if me.Status == http.StatusNotFound {
			return nil, err
		}
		st.Status, st.Error = "failed", me.Message
	} else {
		st.Result = *res
	}
	s.deleteMu.Lock()
	if len(s.deletes) > 1000 {
		clear(s.deletes)
	}
	s.deletes[st.DeleteID] = st
	s.deleteMu.Unlock()
	return map[string]string{"delete_id": st.DeleteID}, nil
}

func (s *Service) deleteStatus(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	a, b := r.PathValue("a"), r.PathValue("b")
	s.deleteMu.Lock()
	defer s.deleteMu.Unlock()
	switch {
	case a == "delete_status":
		st, ok := s.deletes[b]
		if !ok {
			return nil, mxhttp.NotFound("delete id not found")
		}
		return st, nil
	case b == "delete_status":
		results := []*deleteStatus{}
		for _, st := range s.deletes {
			if string(st.RoomID) == a {
				results = append(results, st)
			}
		}
		if len(results) == 0 {
			return nil, mxhttp.NotFound("no deletion for this room")
		}
		return map[string]any{"results": results}, nil
	}
	return nil, mxhttp.Unrecognized("unrecognized request: %s %s", r.Method, r.URL.Path)
}

func (s *Service) setBlocked(ctx context.Context, roomID id.RoomID, by id.UserID, block bool) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		if !block {
			_, err := tx.Exec(ctx, "DELETE FROM blocked_rooms WHERE room_id = $1", roomID)
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3)
			ON CONFLICT (room_id) DO NOTHING`, roomID, by, nowMS())
		return err
	})
}

func (s *Service) getBlock(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	blocked, by, err := s.RoomBlocked(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	if !blocked {
		return map[string]bool{"block": false}, nil
	}
	return map[string]any{"block": true, "user_id": by}, nil
}

func (s *Service) putBlock(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Block *bool `json:"block"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Block == nil {
		return nil, mxhttp.MissingParam("missing block")
	}
	if err := s.setBlocked(r.Context(), roomID, sess.UserID, *req.Block); err != nil {
		return nil, err
	}
	s.log.Info("room block changed", "admin", sess.UserID, "room_id", roomID, "block", *req.Block)
	return map[string]bool{"block": *req.Block}, nil
}
