package accounts

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/remote"
)

// FederationQuerier asks another server a federation query: the mautrix
// federation client's Query, which node hands over while federation is on.
type FederationQuerier interface {
	Query(ctx context.Context, serverName, queryType string, queryParams url.Values, respStruct any) error
}

// Remote profile lookups.
const (
	// RemoteProfileTTL is how long another server's answer about a user's
	// profile is kept.
	RemoteProfileTTL = time.Minute
	// remoteProfilesKept bounds the remote profiles kept at once.
	remoteProfilesKept = 10000
	// remoteQueryTimeout bounds one profile query to another server.
	remoteQueryTimeout = 15 * time.Second
)

// remoteProfiles looks up other servers' users.
type remoteProfiles struct {
	query FederationQuerier
	cache *remote.Cache[id.UserID, map[string]json.RawMessage]
}

// UseFederation makes profile lookups of other servers' users ask those
// servers (GET /_matrix/federation/v1/query/profile), keeping each answer
// for RemoteProfileTTL. Without it, such users have no profile.
func (s *Service) UseFederation(q FederationQuerier) {
	s.remote = &remoteProfiles{query: q, cache: remote.NewCache[id.UserID, map[string]json.RawMessage](RemoteProfileTTL, remoteProfilesKept)}
}

// isRemote reports whether uid belongs to another server whose profiles
// this node can ask for.
func (s *Service) isRemote(uid id.UserID) bool {
	_, server, err := uid.Parse()
	return err == nil && server != s.opts.ServerName && config.ValidServerName(server) == nil && s.remote != nil
}

// remoteProfile asks uid's server for uid's profile: the fields it
// answers (null ones left out), M_NOT_FOUND when it says there is none,
// 502 or 504 when it cannot answer.
func (s *Service) remoteProfile(ctx context.Context, uid id.UserID) (map[string]json.RawMessage, error) {
	server := uid.Homeserver()
	return s.remote.cache.Get(ctx, uid, remoteQueryTimeout, func(ctx context.Context) (map[string]json.RawMessage, error) {
		var p map[string]json.RawMessage
		if err := s.remote.query.Query(ctx, server, "profile", url.Values{"user_id": {string(uid)}}, &p); err != nil {
			return nil, remote.Error(server, err)
		}
		if p == nil {
			return nil, remote.BadGateway("%s answered a profile query with null", server)
		}
		if b, _ := json.Marshal(p); len(b) > maxProfileBytes {
			return nil, remote.BadGateway("%s answered a profile larger than 64 KiB", server)
		}
		for k, v := range p {
			if string(v) == "null" || (k == "displayname" || k == "avatar_url") && !isJSONString(v) {
				delete(p, k)
			}
		}
		return p, nil
	})
}

func isJSONString(v json.RawMessage) bool {
	var s string
	return json.Unmarshal(v, &s) == nil
}

// FederationRoutes registers the federation endpoint of profiles with h
// (which adds X-Matrix authentication).
func (s *Service) FederationRoutes(h func(pattern string, handler http.Handler)) {
	h("GET /_matrix/federation/v1/query/profile", mxhttp.Handle(s.queryProfile))
}

// queryProfile is GET /_matrix/federation/v1/query/profile: a local
// user's profile, or only the field asked for.
func (s *Service) queryProfile(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	uid := id.UserID(q.Get("user_id"))
	if uid == "" {
		return nil, mxhttp.MissingParam("user_id is required")
	}
	_, server, err := uid.Parse()
	if err != nil {
		return nil, mxhttp.InvalidParam("user_id: %v", err)
	}
	if server != s.opts.ServerName {
		return nil, mxhttp.InvalidParam("%s is not a user of this server", uid)
	}
	p, ok, err := s.Profile(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("user does not exist")
	}
	if !q.Has("field") {
		return p, nil
	}
	field := q.Get("field")
	if err := checkProfileKey(field); err != nil {
		return nil, err
	}
	v, ok := p[field]
	if !ok {
		return nil, mxhttp.NotFound("profile field not set")
	}
	return map[string]json.RawMessage{field: v}, nil
}
