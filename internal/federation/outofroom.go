package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/remote"
	"github.com/matrixos/matrixos/internal/rooms"
)

// LeaveRemote makes a local user leave (reject an invite to, or rescind a
// knock on) a room this node is not in, through the first of via that
// accepts it: make_leave, signed here, send_leave; the leave is stored so
// the user's /sync shows it.
func (s *Service) LeaveRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) error {
	servers := s.viaServers(via)
	if len(servers) == 0 {
		return mxhttp.NotFound("no server to leave %s through", roomID)
	}
	return s.tryEach(servers, "leave", roomID, func(server string) error {
		return s.leaveVia(ctx, server, user, roomID, content)
	})
}

func (s *Service) leaveVia(ctx context.Context, server string, user id.UserID, roomID id.RoomID, content map[string]any) error {
	s.Outbox.Flush(ctx, server)
	tmpl, err := s.Client.MakeLeave(ctx, &federation.ReqMakeLeave{RoomID: roomID, UserID: user, Via: server})
	if err != nil {
		return fmt.Errorf("make_leave: %w", err)
	}
	version := tmpl.RoomVersion
	if version == "" {
		version = id.RoomV1
	}
	evID, signed, err := s.signTemplate(version, tmpl.Event, user, "leave", content)
	if err != nil {
		return err
	}
	if err := s.Client.SendLeave(ctx, &federation.ReqSendLeave{RoomID: roomID, EventID: evID, Event: signed, Via: server}); err != nil {
		return fmt.Errorf("send_leave: %w", err)
	}
	return s.storeOutOfRoom(ctx, version, signed)
}

// KnockRemote knocks on a room this node is not in for a local user,
// through the first of via that accepts: make_knock, signed here,
// send_knock.
func (s *Service) KnockRemote(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, content map[string]any) error {
	if err := s.rooms.CheckRoomPolicy(ctx, roomID); err != nil {
		return err
	}
	servers := s.viaServers(via)
	if len(servers) == 0 {
		return mxhttp.NotFound("no server to knock on %s through", roomID)
	}
	return s.tryEach(servers, "knock", roomID, func(server string) error {
		return s.knockVia(ctx, server, user, roomID, content)
	})
}

func (s *Service) knockVia(ctx context.Context, server string, user id.UserID, roomID id.RoomID, content map[string]any) error {
	s.Outbox.Flush(ctx, server)
	tmpl, err := s.Client.MakeKnock(ctx, &federation.ReqMakeKnock{RoomID: roomID, UserID: user, Via: server, SupportedVersions: rooms.SupportedVersions})
	if err != nil {
		return fmt.Errorf("make_knock: %w", err)
	}
	version := tmpl.RoomVersion
	if version == "" {
		version = id.RoomV1
	}
	evID, signed, err := s.signTemplate(version, tmpl.Event, user, "knock", content)
	if err != nil {
		return err
	}
	if _, err := s.Client.SendKnock(ctx, &federation.ReqSendKnock{RoomID: roomID, EventID: evID, Event: signed, Via: server}); err != nil {
		return fmt.Errorf("send_knock: %w", err)
	}
	return s.storeOutOfRoom(ctx, version, signed)
}

// storeOutOfRoom stores a local user's leave or knock, accepted by the
// resident server, so that the user's /sync shows it.
func (s *Service) storeOutOfRoom(ctx context.Context, version id.RoomVersion, signed json.RawMessage) error {
	if _, err := s.rooms.StoreOutOfRoomMembership(ctx, version, signed); err != nil {
		return fmt.Errorf("store the membership: %w", err)
	}
	return nil
}

// SendInvite gives invite, an invite of a user of another server that
// the room's engine proposed (built and authorised, not appended), to that
// server (/invite v2, with the room's stripped state), which countersigns
// it and shows it to the invitee; the event it returns is then appended
// with both servers' signatures, and returned. Its refusal (403
// M_FORBIDDEN, 400 M_INCOMPATIBLE_ROOM_VERSION, ...) is returned as it is
// and leaves the room unchanged; a server that cannot be reached, or
// returns another event or a bad signature, is 502.
func (s *Service) SendInvite(ctx context.Context, invite *rooms.Event) (*rooms.Event, error) {
	invitee := id.UserID(*invite.StateKey)
	version, err := s.rooms.Version(ctx, invite.RoomID)
	if err != nil {
		return nil, err
	}
	var state []json.RawMessage
	for _, ev := range s.strippedState(ctx, invite.RoomID) {
		raw, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode invite_room_state: %w", err)
		}
		state = append(state, raw)
	}
	server := invitee.Homeserver()
	resp, err := s.Client.SendInvite(ctx, &federation.ReqSendInvite{
		RoomID: invite.RoomID, UserID: invitee, EventID: invite.ID, Event: invite.JSON,
		InviteRoomState: state, RoomVersion: version,
	})
	if err != nil {
		if he, ok := errors.AsType[mautrix.HTTPError](err); ok && he.RespError != nil && he.Response != nil && he.Response.StatusCode == http.StatusBadRequest {
			return nil, &mxhttp.Error{Status: http.StatusBadRequest, Code: he.RespError.ErrCode, Message: he.RespError.Err}
		}
		return nil, remote.Error(server, err)
	}
	stored, err := s.rooms.AppendCountersigned(ctx, invite, server, resp.Event)
	if errors.Is(err, rooms.ErrBadCountersignature) {
		return nil, remote.BadGateway("the invite %s countersigned: %v", server, err)
	}
	if err != nil {
		return nil, fmt.Errorf("append the invite: %w", err)
	}
	return stored, nil
}
