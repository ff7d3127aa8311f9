package spaces

import (
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
}

// summaryResponse is a summary with the caller's membership.
type summaryResponse struct {
	Summary
	Membership string `json:"membership,omitempty"`
}

// getSummary answers for callers with or without an access token: a room
// they may not preview is reported as not found, so its existence is not
// revealed.
func (s *Service) getSummary(w http.ResponseWriter, r *http.Request) (any, error) {
	var user id.UserID
	if tok := mxhttp.AccessToken(r); tok != "" {
		sess, err := s.acc.Authenticate(r.Context(), tok)
		if err != nil {
			return nil, err
		}
		user = sess.UserID
	}
	target := r.PathValue("roomIdOrAlias")
	roomID := id.RoomID(target)
	switch {
	case strings.HasPrefix(target, "#"):
		resolved, err := s.rooms.ResolveAlias(r.Context(), id.RoomAlias(target))
		if err != nil {
			return nil, err
		}
		if resolved == "" {
			return nil, mxhttp.NotFound("room alias %s not found", target)
		}
		roomID = resolved
	case !strings.HasPrefix(target, "!"):
		return nil, mxhttp.InvalidParam("%q is neither a room ID nor a room alias", target)
	}
	v, err := s.view(r.Context(), roomID)
	if err != nil {
		return nil, err
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
