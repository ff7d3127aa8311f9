package spaces

import (
	"context"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// Service serves the space hierarchy and room summaries.
type Service struct {
	acc   *accounts.Service
	rooms *rooms.Engine

	// remote asks other servers about their spaces (nil while federation
	// is off); see UseFederation.
	remote *remoteSpaces
	// ResolveAlias, when set, resolves any alias, asking its server when
	// it is another's (clientapi's, which owns aliases).
	ResolveAlias func(ctx context.Context, alias id.RoomAlias) (id.RoomID, []string, error)
}

// New returns the service.
func New(acc *accounts.Service, eng *rooms.Engine) *Service {
	return &Service{acc: acc, rooms: eng}
}

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v1 = "/_matrix/client/v1"
	mux.HandleFunc("GET "+v1+"/rooms/{roomId}/hierarchy", s.acc.Auth(s.getHierarchy))
	mux.HandleFunc("GET "+v1+"/room_summary/{roomIdOrAlias}", mxhttp.Handle(s.getSummary))
	// The two paths of MSC3266's unstable prefix, the only ones that
	// matrix-js-sdk before version 37 asks (Cinny 4 among its clients):
	// the same summary, under the names its first drafts used too.
	const nheko = "/_matrix/client/unstable/im.nheko.summary"
	mux.HandleFunc("GET "+nheko+"/summary/{roomIdOrAlias}", mxhttp.Handle(s.getUnstableSummary))
	mux.HandleFunc("GET "+nheko+"/rooms/{roomIdOrAlias}/summary", mxhttp.Handle(s.getUnstableSummary))
}

// unstableSummary is a summary as MSC3266's unstable paths answer it: the
// stable body with the room version and encryption also under the
// prefixed names of the MSC's first drafts.
type unstableSummary struct {
	summaryResponse
	RoomVersion string `json:"im.nheko.summary.room_version,omitempty"`
	Encryption  string `json:"im.nheko.summary.encryption,omitempty"`
}

// getUnstableSummary answers MSC3266's unstable paths as getSummary does.
func (s *Service) getUnstableSummary(w http.ResponseWriter, r *http.Request) (any, error) {
	resp, err := s.getSummary(w, r)
	if err != nil {
		return nil, err
	}
	if sum, ok := resp.(summaryResponse); ok {
		return unstableSummary{summaryResponse: sum, RoomVersion: sum.RoomVersion, Encryption: sum.Encryption}, nil
	}
	return resp, nil
}

// summaryResponse is a summary with the caller's membership.
type summaryResponse struct {
	Summary
	Membership string `json:"membership,omitempty"`
}

// getSummary answers for callers with or without an access token: a room
// they may not preview is reported as not found, so its existence is not
// revealed. For a caller with an access token and federation on, an
// alias of another server is resolved there and a room this server does
// not know is asked of the alias's servers or those of the via parameter.
func (s *Service) getSummary(w http.ResponseWriter, r *http.Request) (any, error) {
	var user id.UserID
	if tok := mxhttp.AccessToken(r); tok != "" {
		sess, err := s.acc.AuthenticateRequest(r)
		if err != nil {
			return nil, err
		}
		user = sess.UserID
	}
	federate := user != "" && s.remote != nil
	target := r.PathValue("roomIdOrAlias")
	roomID := id.RoomID(target)
	via := r.URL.Query()["via"]
	switch {
	case strings.HasPrefix(target, "#"):
		var err error
		if roomID, via, err = s.resolveAlias(r.Context(), id.RoomAlias(target), federate); err != nil {
			return nil, err
		}
	case !strings.HasPrefix(target, "!"):
		return nil, mxhttp.InvalidParam("%q is neither a room ID nor a room alias", target)
	case len(via) == 0:
		if _, server, ok := strings.Cut(target, ":"); ok {
			via = []string{server} // the creator's server, in room versions before 12
		}
	}
	v, err := s.view(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	if v == nil && federate {
		return s.remoteSummary(r.Context(), roomID, via, user)
	}
	if v == nil || !s.canPreview(v, user) {
		return nil, mxhttp.NotFound("room not found")
	}
	resp := summaryResponse{Summary: v.Summary}
	if user != "" {
		resp.Membership = v.members[user]
		if resp.Membership == "" {
			resp.Membership = "leave"
		}
	}
	return resp, nil
}

// resolveAlias returns the room of an alias and servers in it: through
// ResolveAlias (which asks other servers) when federate, else from this
// server's aliases.
func (s *Service) resolveAlias(ctx context.Context, alias id.RoomAlias, federate bool) (id.RoomID, []string, error) {
	if federate && s.ResolveAlias != nil {
		return s.ResolveAlias(ctx, alias)
	}
	roomID, err := s.rooms.ResolveAlias(ctx, alias)
	if err != nil {
		return "", nil, err
	}
	if roomID == "" {
		return "", nil, mxhttp.NotFound("room alias %s not found", alias)
	}
	return roomID, nil, nil
}
