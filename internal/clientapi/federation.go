package clientapi

import (
	"context"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// requireLocalInvitee refuses, while federation is off, to invite a user
// of another server: the invite would only be written here, and nobody
// would ever receive it. Every path that invites (/invite, createRoom's
// invite list, an m.room.member state event) asks it first; with
// federation on such invites go through send, which has the invitee's
// server countersign them before they are appended.
func (s *Service) requireLocalInvitee(user id.UserID) error {
	_, server, err := user.Parse()
	if err != nil {
		return mxhttp.InvalidParam("invalid user ID %q", user)
	}
	if server != s.serverName && s.remoteRooms == nil {
		return mxhttp.Forbidden("federation is not enabled on this server: %s, a user of %s, cannot be invited", user, server)
	}
	return nil
}

// requireLocalAlias refuses to join or knock by an alias of another
// server: resolving it, and joining the room it names, need federation.
func (s *Service) requireLocalAlias(alias id.RoomAlias) error {
	_, server, ok := strings.Cut(strings.TrimPrefix(string(alias), "#"), ":")
	if ok && server != s.serverName {
		return mxhttp.Forbidden("federation is not enabled on this server: %s is a room alias of %s", alias, server)
	}
	return nil
}

// requireInvitePermission refuses, with the spec's 403 M_INVITE_BLOCKED,
// an invite that the invitee's invite permission config blocks. An
// invite it ignores goes through: the invitee's /sync hides it, and the
// inviter learns nothing.
func (s *Service) requireInvitePermission(ctx context.Context, invitee, inviter id.UserID) error {
	if s.InviteBlocked == nil {
		return nil
	}
	blocked, err := s.InviteBlocked(ctx, invitee, inviter)
	if err != nil {
		return err
	}
	if blocked {
		return mxhttp.InviteBlocked("%s does not accept invites from %s", invitee, inviter)
	}
	return nil
}
