package admin

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// DefaultNoticesLocalpart is the localpart of the system user that sends
// server notices when Options.NoticesLocalpart is empty.
const DefaultNoticesLocalpart = "server"

// NoticeTag is the room tag of a server notices room.
const NoticeTag = "m.server_notice"

func (s *Service) noticeRoutes(mux *http.ServeMux) {
	const v1 = "/_synapse/admin/v1/send_server_notice"
	mux.HandleFunc("POST "+v1, s.admin(s.postNotice))
	mux.HandleFunc("PUT "+v1+"/{txnId}", s.admin(s.postNotice))
}

// NoticesUser is the system user that sends server notices.
func (s *Service) NoticesUser() id.UserID { return s.accounts.UserID(s.opts.NoticesLocalpart) }

// SendNotice posts a plain-text server notice to a local user, creating
// the user's notices room on first use.
func (s *Service) SendNotice(ctx context.Context, user id.UserID, body string) error {
	content, _ := json.Marshal(map[string]string{"msgtype": "m.server_notice", "body": body})
	_, err := s.sendNotice(ctx, user, "m.room.message", nil, content, "")
	return err
}

func (s *Service) postNotice(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		UserID   id.UserID       `json:"user_id"`
		Content  json.RawMessage `json:"content"`
		Type     string          `json:"type"`
		StateKey *string         `json:"state_key"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.UserID == "" {
		return nil, mxhttp.MissingParam("missing user_id")
	}
	if len(req.Content) == 0 || req.Content[0] != '{' {
		return nil, mxhttp.MissingParam("content must be an object")
	}
	if req.Type == "" {
		req.Type = "m.room.message"
	}
	txn := r.PathValue("txnId")
	if txn != "" {
		txn = "notice:" + string(req.UserID) + ":" + txn
	}
	evID, err := s.sendNotice(r.Context(), req.UserID, req.Type, req.StateKey, req.Content, txn)
	if err != nil {
		return nil, err
	}
	s.log.Info("server notice sent", "admin", sess.UserID, "user_id", req.UserID, "event_id", evID)
	return map[string]any{"event_id": evID}, nil
}

func (s *Service) sendNotice(ctx context.Context, user id.UserID, evType string, stateKey *string, content json.RawMessage, txn string) (id.EventID, error) {
	if _, hs, err := user.Parse(); err != nil || hs != s.serverName {
		return "", mxhttp.InvalidParam("server notices can only be sent to local users")
	}
	u, ok, err := s.accounts.GetUser(ctx, user)
	if err != nil {
		return "", err
	}
	if !ok || u.Deactivated {
		return "", mxhttp.NotFound("user not found")
	}
	if user == s.NoticesUser() {
		return "", mxhttp.InvalidParam("cannot send server notices to the server notices user")
	}
	roomID, err := s.noticesRoom(ctx, user)
	if err != nil {
		return "", err
	}
	ev, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: evType, StateKey: stateKey, Sender: s.NoticesUser(), Content: content, TxnID: txn})
	if err != nil {
		return "", fmt.Errorf("send server notice: %w", err)
	}
	return ev.ID, nil
}

// noticesUser makes sure the system user exists. A human account that
// already holds the localpart is never used.
func (s *Service) noticesUser(ctx context.Context) (id.UserID, error) {
	uid := s.NoticesUser()
	u, ok, err := s.accounts.GetUser(ctx, uid)
	if err != nil {
		return "", err
	}
	if ok {
		if u.PasswordHash != "" {
			return "", fmt.Errorf("server notices: %s is a user account with a password, not the system user", uid)
		}
		return uid, nil
	}
	if _, err := s.accounts.CreateUser(ctx, s.opts.NoticesLocalpart, "", false); err != nil && !errors.Is(err, accounts.ErrUserExists) {
		return "", fmt.Errorf("create server notices user: %w", err)
	}
	if err := s.accounts.SetProfileField(ctx, uid, "displayname", "Server Notices"); err != nil {
		s.log.Warn("server notices user display name", "err", err)
	}
	return uid, nil
}

// noticesRoom returns the user's notices room, creating it (or inviting
// the user back after they left) as needed.
func (s *Service) noticesRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	s.noticeMu.Lock()
	defer s.noticeMu.Unlock()
	sys, err := s.noticesUser(ctx)
	if err != nil {
		return "", err
	}
	var roomID id.RoomID
	err = s.db.QueryRow(ctx, "SELECT room_id FROM server_notice_rooms WHERE user_id = $1", user).Scan(&roomID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("load notices room: %w", err)
	}
	if roomID != "" && s.rooms.Membership(sys, roomID) == "join" {
		switch s.rooms.Membership(user, roomID) {
		case "join", "invite":
		default:
			if err := s.invite(ctx, sys, user, roomID); err != nil {
				return "", err
			}
		}
		return roomID, nil
	}
	roomID, err = s.createNoticesRoom(ctx, sys, user)
	if err != nil {
		return "", err
	}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id`, user, roomID)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store notices room: %w", err)
	}
	if s.Tags != nil {
		tag, _ := json.Marshal(map[string]any{"tags": map[string]any{NoticeTag: map[string]any{}}})
		if err := s.Tags.Set(ctx, user, roomID, "m.tag", tag); err != nil {
			s.log.Warn("tag server notices room", "user_id", user, "room_id", roomID, "err", err)
		}
	}
	return roomID, nil
}

// invitedToNotices reports whether roomID is user's server notices room
// and the user's invite to it is pending: as on Synapse, the invite can
// only be accepted, so that notices are not lost unread.
func (s *Service) invitedToNotices(ctx context.Context, user id.UserID, roomID id.RoomID) (bool, error) {
	if s.rooms.Membership(user, roomID) != "invite" {
		return false, nil
	}
	var notices id.RoomID
	err := s.db.QueryRow(ctx, "SELECT room_id FROM server_notice_rooms WHERE user_id = $1", user).Scan(&notices)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load notices room: %w", err)
	}
	return notices == roomID, nil
}

func (s *Service) invite(ctx context.Context, sys, user id.UserID, roomID id.RoomID) error {
	content := map[string]any{"membership": "invite"}
	if name, avatar := s.accounts.DisplayName(ctx, user); name != "" {
		content["displayname"] = name
		if avatar != "" {
			content["avatar_url"] = avatar
		}
	}
	b, _ := json.Marshal(content)
	sk := string(user)
	if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: sys, Content: b}); err != nil {
		return fmt.Errorf("invite to notices room: %w", err)
	}
	return nil
}

// createNoticesRoom makes a private room where only the system user may
// post, and invites the user.
func (s *Service) createNoticesRoom(ctx context.Context, sys, user id.UserID) (id.RoomID, error) {
	version := s.opts.RoomVersion
	users := map[id.UserID]int{sys: 100}
	if version.PrivilegedRoomCreators() {
		users = map[id.UserID]int{} // creators have unlimited power and must not be listed
	}
	sysMember := map[string]any{"membership": "join", "displayname": "Server Notices"}
	protos := []rooms.Proto{}
	add := func(typ, sk string, content any) {
		b, _ := json.Marshal(content)
		protos = append(protos, rooms.Proto{Type: typ, StateKey: &sk, Sender: sys, Content: b})
	}
	add("m.room.member", string(sys), sysMember)
	add("m.room.power_levels", "", map[string]any{
		"users": users, "users_default": 0, "events_default": 100, "state_default": 100,
		"ban": 100, "kick": 100, "redact": 100, "invite": 100,
	})
	add("m.room.join_rules", "", map[string]string{"join_rule": "invite"})
	add("m.room.history_visibility", "", map[string]string{"history_visibility": "shared"})
	add("m.room.name", "", map[string]string{"name": "Server Notices"})
	roomID, _, err := s.rooms.CreateRoom(ctx, version, sys, nil, protos)
	if err != nil {
		return "", fmt.Errorf("create notices room: %w", err)
	}
	if err := s.invite(ctx, sys, user, roomID); err != nil {
		return "", err
	}
	s.log.Info("server notices room created", "user_id", user, "room_id", roomID)
	return roomID, nil
}
