package clientapi

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// knock serves POST /knock/{roomIdOrAlias}: it asks to join a room whose
// join rule is knock (or knock_restricted). The room's members accept by
// inviting and refuse by kicking; the knocker withdraws by leaving.
func (s *Service) knock(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	t, err := s.resolveTarget(r, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	roomID := t.roomID
	var req struct {
		Reason string `json:"reason"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	// The user's membership as this server knows it answers first, for a
	// room of another server too (an invite it relayed, a ban it saw).
	switch s.rooms.Membership(sess.UserID, roomID) {
	case "join":
		return nil, mxhttp.Forbidden("you are already in the room")
	case "invite":
		return nil, mxhttp.Forbidden("you are already invited to the room")
	case "ban":
		return nil, mxhttp.Forbidden("you are banned from the room")
	}
	if s.remoteRooms != nil && !s.inRoomHere(r.Context(), roomID) {
		if via := s.remoteVia(r.Context(), t); len(via) > 0 {
			content := map[string]any{}
			if req.Reason != "" {
				content["reason"] = req.Reason
			}
			s.addProfile(r.Context(), sess.UserID, content)
			if err := s.remoteRooms.KnockRemote(r.Context(), sess.UserID, roomID, via, content); err != nil {
				return nil, err
			}
			return map[string]any{"room_id": roomID}, nil
		}
	}
	version, err := s.rooms.Version(r.Context(), roomID)
	if err != nil {
		return nil, mxhttp.NotFound("room not found (knocking on rooms on other servers needs federation)")
	}
	if !version.Knocks() {
		return nil, mxhttp.Forbidden("room version %s does not support knocking", version)
	}
	if _, err := s.membership(r, sess, roomID, sess.UserID, "knock", req.Reason, nil); err != nil {
		return nil, s.roomErr(r.Context(), err, roomID, sess.UserID)
	}
	return map[string]any{"room_id": roomID}, nil
}

// forget serves POST /rooms/{roomId}/forget: a room the user has left
// disappears from their sync and its history becomes unreadable to them.
func (s *Service) forget(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return nil, mxhttp.NotFound("room not found")
	}
	switch m := s.rooms.Membership(sess.UserID, roomID); m {
	case "join", "invite", "knock":
		return nil, &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN",
			Message: "user " + string(sess.UserID) + " is in room " + string(roomID) + " (" + m + "); leave it first"}
	}
	if err := s.rooms.Forget(r.Context(), sess.UserID, roomID); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}
