package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// exchangeThirdPartyInvite is PUT
// /_matrix/federation/v1/exchange_third_party_invite/{roomId}, on the
// room's side: the server of a user who took up a third-party invite (an
// identity server signed the binding of their address to their user ID)
// asks for it to become an invite. The body is the invite, without
// signatures: an m.room.member invite of that user, sent by the local user
// who made the third-party invite, its content's third_party_invite
// carrying the identity server's signed block. The auth rules check that
// block (its mxid, its token naming an m.room.third_party_invite event of
// the room's state sent by the same user, a signature by one of that
// event's public keys); the invite is then sent as any local invite, to
// the invitee's server to countersign first.
//
// Making a third-party invite (/invite with id_server, and /3pid/onbind,
// which an identity server calls) needs an identity server, which this
// server does not use: only this resident side of the exchange is served.
func (s *Service) exchangeThirdPartyInvite(w http.ResponseWriter, r *http.Request) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Type     string          `json:"type"`
		RoomID   id.RoomID       `json:"room_id"`
		Sender   id.UserID       `json:"sender"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var content struct {
		Membership       string `json:"membership"`
		ThirdPartyInvite *struct {
			Signed json.RawMessage `json:"signed"`
		} `json:"third_party_invite"`
	}
	switch {
	case req.Type != "m.room.member" || req.StateKey == nil || json.Unmarshal(req.Content, &content) != nil:
		return nil, mxhttp.BadJSON("the body is not an m.room.member event")
	case req.RoomID != roomID:
		return nil, mxhttp.BadJSON("the event is not in room %s", roomID)
	case content.Membership != "invite" || content.ThirdPartyInvite == nil || len(content.ThirdPartyInvite.Signed) == 0:
		return nil, mxhttp.BadJSON("the event is not an invite with a signed third_party_invite")
	}
	invitee := id.UserID(*req.StateKey)
	if _, _, err := invitee.Parse(); err != nil {
		return nil, mxhttp.InvalidParam("invalid user ID %q", invitee)
	}
	if _, server, err := req.Sender.Parse(); err != nil || server != s.serverName {
		return nil, mxhttp.Forbidden("the inviter %s is not a user of this server", req.Sender)
	}
	if _, err := s.rooms.Version(r.Context(), roomID); err != nil {
		return nil, mxhttp.NotFound("room not found")
	}
	if err := s.requireInvitePermission(r.Context(), invitee, req.Sender); err != nil {
		return nil, err
	}
	p := rooms.Proto{Type: "m.room.member", StateKey: req.StateKey, Sender: req.Sender, Content: req.Content}
	if _, err := s.send(r.Context(), roomID, p); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
