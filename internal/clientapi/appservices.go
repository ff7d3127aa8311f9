package clientapi

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Appservices is what clientapi asks of the application services.
// internal/appservice implements it; the node sets Service.Appservices.
type Appservices interface {
	// NetworkRooms returns the rooms published in the directory of the
	// appservice network instanceID ("" for every network's).
	NetworkRooms(ctx context.Context, instanceID string) ([]id.RoomID, error)
	// ExclusiveAlias reports whether an appservice other than the one
	// behind sess holds alias exclusively.
	ExclusiveAlias(alias id.RoomAlias, sess *accounts.Session) bool
	// QueryUser and QueryAlias ask the appservices whose namespaces hold
	// a user or an alias that does not exist whether it should; true
	// when one created it. The error is a requester past its limit of
	// such lookups (429).
	QueryUser(ctx context.Context, user id.UserID) (bool, error)
	QueryAlias(ctx context.Context, alias id.RoomAlias) (bool, error)
}

// askAppservicesForUser gives the application services a chance to create
// a local user that does not exist yet (an invite of a ghost user) before
// it is used.
func (s *Service) askAppservicesForUser(ctx context.Context, user id.UserID) error {
	if s.Appservices == nil {
		return nil
	}
	if _, server, err := user.Parse(); err != nil || server != s.serverName {
		return nil
	}
	if _, exists, err := s.accounts.GetUser(ctx, user); err != nil || exists {
		return err
	}
	_, err := s.Appservices.QueryUser(ctx, user)
	return err
}

// checkAliasNotExclusive refuses an alias that an application service
// other than the session's holds exclusively (M_EXCLUSIVE).
func (s *Service) checkAliasNotExclusive(alias id.RoomAlias, sess *accounts.Session) error {
	if s.Appservices != nil && s.Appservices.ExclusiveAlias(alias, sess) {
		return mxhttp.Exclusive("%s is reserved by an application service", alias)
	}
	return nil
}
