package spaces

import (
	"context"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// federationHierarchy is the answer of GET /_matrix/federation/v1/
// hierarchy/{roomId}.
type federationHierarchy struct {
	Room                 hierarchyRoom `json:"room"`
	Children             []Summary     `json:"children"`
	InaccessibleChildren []id.RoomID   `json:"inaccessible_children"`
}

// FederationRoutes registers GET /_matrix/federation/v1/hierarchy/{roomId}
// with h (which adds X-Matrix authentication); origin returns the server
// that signed a request h passed on.
func (s *Service) FederationRoutes(h func(pattern string, handler http.Handler), origin func(*http.Request) string) {
	h("GET /_matrix/federation/v1/hierarchy/{roomId}", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.fedHierarchy(r, origin(r))
	}))
}

// fedHierarchy answers another server about a space this server knows:
// the space with its m.space.child events, unless the server may not
// preview it (then 404, as for a room this server does not know), and a
// summary of each child it knows, or the child's ID among the
// inaccessible children when the server may not preview that one. The
// federation API does not paginate or walk deeper: the asking server does.
func (s *Service) fedHierarchy(r *http.Request, server string) (any, error) {
	ctx := r.Context()
	var suggestedOnly bool
	switch v := r.URL.Query().Get("suggested_only"); v {
	case "", "false":
	case "true":
		suggestedOnly = true
	default:
		return nil, mxhttp.InvalidParam("suggested_only must be true or false")
	}
	v, err := s.view(ctx, id.RoomID(r.PathValue("roomId")))
	if err != nil {
		return nil, err
	}
	if v == nil || !s.serverMayPreview(ctx, v, server) {
		return nil, mxhttp.NotFound("room not found")
	}
	children := s.children(v, suggestedOnly)
	resp := federationHierarchy{
		Room:                 hierarchyRoom{Summary: v.Summary, ChildrenState: make([]childState, 0, len(children))},
		Children:             []Summary{},
		InaccessibleChildren: []id.RoomID{},
	}
	for _, c := range children {
		resp.Room.ChildrenState = append(resp.Room.ChildrenState, c)
		cv, err := s.view(ctx, id.RoomID(c.StateKey))
		if err != nil {
			return nil, err
		}
		switch {
		case cv == nil: // nothing to say about it
		case s.serverMayPreview(ctx, cv, server):
			resp.Children = append(resp.Children, cv.Summary)
		default:
			resp.InaccessibleChildren = append(resp.InaccessibleChildren, cv.RoomID)
		}
	}
	return resp, nil
}

// serverMayPreview is canPreview for a server: it may preview a room one
// of its users is joined to, invited to or knocking on, a world-readable
// room, one whose join rule lets anyone join or knock, and a restricted
// room when one of its users is joined to an allowed room.
func (s *Service) serverMayPreview(ctx context.Context, v *roomView, server string) bool {
	for user, m := range v.members {
		if user.Homeserver() == server && (m == "join" || m == "invite" || m == "knock") {
			return true
		}
	}
	return openToPreview(&v.Summary, func(allowed id.RoomID) bool {
		return s.rooms.ServerInRoom(ctx, server, allowed)
	})
}
