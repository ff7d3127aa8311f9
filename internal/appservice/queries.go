package appservice

import (
	"context"
	"net/http"
	"net/url"

	"maunium.net/go/mautrix/id"
)

// QueryUser asks the appservices whose user namespaces hold user (the
// exclusive holder first) whether it exists: GET /_matrix/app/v1/users/
// {userId}. It reports whether one answered 200, meaning it has created
// the user. Failures are logged and count as no.
func (s *Service) QueryUser(ctx context.Context, user id.UserID) bool {
	path := "/_matrix/app/v1/users/" + url.PathEscape(string(user))
	return s.query(ctx, path, s.interested(func(reg *Registration) (bool, bool) {
		return reg.InterestedInUser(user), reg.ExclusiveUser(user)
	}))
}

// QueryAlias asks the appservices whose alias namespaces hold alias (the
// exclusive holder first) whether it exists: GET /_matrix/app/v1/rooms/
// {roomAlias}. It reports whether one answered 200, meaning it has created
// the room and the alias.
func (s *Service) QueryAlias(ctx context.Context, alias id.RoomAlias) bool {
	path := "/_matrix/app/v1/rooms/" + url.PathEscape(string(alias))
	return s.query(ctx, path, s.interested(func(reg *Registration) (bool, bool) {
		return reg.InterestedInAlias(alias), reg.ExclusiveAlias(alias)
	}))
}

// interested lists the registrations with a url that match says are
// interested, those holding the value exclusively first.
func (s *Service) interested(match func(*Registration) (interested, exclusive bool)) []*Registration {
	var exclusive, shared []*Registration
	for _, reg := range s.Registry.All() {
		in, ex := match(reg)
		switch {
		case reg.URL == "" || !in:
		case ex:
			exclusive = append(exclusive, reg)
		default:
			shared = append(shared, reg)
		}
	}
	return append(exclusive, shared...)
}

// query asks each registration in turn until one answers 200.
func (s *Service) query(ctx context.Context, path string, regs []*Registration) bool {
	for _, reg := range regs {
		status, _, err := s.call(ctx, reg, http.MethodGet, path, nil, nil)
		if err != nil {
			s.log.Warn("appservice query failed", "appservice", reg.ID, "path", path, "err", err)
			continue
		}
		if status == http.StatusOK {
			return true
		}
	}
	return false
}
