package clientapi

import (
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// requireLocalInvitee refuses to invite a user of another server: without
// federation the invite would only be written here, and nobody would ever
// receive it. Every path that invites (/invite, createRoom's invite list,
// an m.room.member state event) asks it first.
func (s *Service) requireLocalInvitee(user id.UserID) error {
	_, server, err := user.Parse()
	if err != nil {
		return mxhttp.InvalidParam("invalid user ID %q", user)
	}
	if server != s.serverName {
		return mxhttp.Forbidden("federation is not enabled on this server: %s, a user of %s, cannot be invited", user, server)
	}
	return nil
}
