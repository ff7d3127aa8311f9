package clientapi

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// OnProfileChanged updates the user's member event in every joined room.
func (s *Service) OnProfileChanged(ctx context.Context, user id.UserID, displayName, avatarURL string) {
	for _, roomID := range s.rooms.JoinedRooms(user) {
		cur, err := s.rooms.StateEvent(ctx, roomID, "m.room.member", string(user))
		if err != nil || cur == nil {
			continue
		}
		var content map[string]any
		json.Unmarshal(cur.Content(), &content)
		if content == nil {
			content = map[string]any{}
		}
		content["membership"] = "join"
		delete(content, "displayname")
		delete(content, "avatar_url")
		if displayName != "" {
			content["displayname"] = displayName
		}
		if avatarURL != "" {
			content["avatar_url"] = avatarURL
		}
		sk := string(user)
		if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: user, Content: mustJSON(content)}); err != nil {
			s.log.Warn("update member event after profile change", "room_id", roomID, "user_id", user, "err", err)
		}
	}
}

// OnDeactivated makes a deactivated user leave every room and reject
// pending invites.
func (s *Service) OnDeactivated(ctx context.Context, user id.UserID) {
	for roomID, m := range s.rooms.Memberships(user) {
		if m != "join" && m != "invite" && m != "knock" {
			continue
		}
		sk := string(user)
		if _, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: &sk, Sender: user, Content: mustJSON(map[string]string{"membership": "leave"})}); err != nil {
			s.log.Warn("leave room on deactivation", "room_id", roomID, "user_id", user, "err", err)
		}
	}
}
