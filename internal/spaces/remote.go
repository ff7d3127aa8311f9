package spaces

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/remote"
)

// Federation is what this package asks other servers through: the mautrix
// federation client, which node hands over while federation is on.
type Federation interface {
	MakeFullRequest(ctx context.Context, params federation.RequestParams) ([]byte, *http.Response, error)
}

// Remote hierarchy requests.
const (
	// RemoteHierarchyTTL is how long another server's answer about a space
	// is kept (the spec asks for caching; it also keeps pages consistent).
	RemoteHierarchyTTL = 5 * time.Minute
	// remoteHierarchiesKept bounds the answers kept at once.
	remoteHierarchiesKept = 1000
	// remoteRequestTimeout bounds one hierarchy request.
	remoteRequestTimeout = 10 * time.Second
	// maxRemoteRequests bounds the rooms one walk asks other servers about.
	maxRemoteRequests = 20
	// maxViaServers bounds the servers asked about one room.
	maxViaServers = 3
	// maxRemoteChildren bounds the children kept of a remote answer.
	maxRemoteChildren = 1000
)

// remoteSpaces asks other servers about their spaces.
type remoteSpaces struct {
	fed        Federation
	serverName string
	log        *slog.Logger
	answers    *remote.Cache[hierarchyKey, *federationHierarchy]
}

type hierarchyKey struct {
	roomID        id.RoomID
	suggestedOnly bool
}

// UseFederation lets the client's hierarchy walk into rooms this server
// does not know: it asks the servers their m.space.child events name
// (GET /_matrix/federation/v1/hierarchy/{roomId}), keeping each answer for
// RemoteHierarchyTTL (a refusal is not kept).
func (s *Service) UseFederation(f Federation, serverName string, log *slog.Logger) {
	answers := remote.NewCache[hierarchyKey, *federationHierarchy](RemoteHierarchyTTL, remoteHierarchiesKept)
	// A server's refusal depends on whether one of this server's users is
	// in a room its rule allows, which a join here changes at once.
	answers.KeepRefusals(0)
	s.remote = &remoteSpaces{fed: f, serverName: serverName, log: log, answers: answers}
}

// remoteRoom returns a room this server does not know as the walk shows
// it: the summary another server gave of it as a child of a space it
// answered about, when it is no space itself, else the room and its
// children as the first of via to answer gives them. False when the user
// may not preview it, no server answers or the walk has asked enough.
func (w *walker) remoteRoom(ctx context.Context, roomID id.RoomID, via []string) (hierarchyRoom, bool) {
	r := w.s.remote
	if r == nil {
		return hierarchyRoom{}, false
	}
	if sum, ok := w.summaries[roomID]; ok && sum.RoomType != "m.space" {
		return hierarchyRoom{Summary: sum, ChildrenState: []childState{}}, w.mayPreview(sum)
	}
	if w.requests >= maxRemoteRequests {
		return hierarchyRoom{}, false
	}
	w.requests++
	h, err := r.answers.Get(ctx, hierarchyKey{roomID, w.suggestedOnly}, remoteRequestTimeout*maxViaServers, func(ctx context.Context) (*federationHierarchy, error) {
		return r.ask(ctx, roomID, via, w.suggestedOnly)
	})
	if err != nil {
		r.log.Debug("space hierarchy of another server", "room_id", roomID, "via", via, "err", err)
		return hierarchyRoom{}, false
	}
	for _, c := range h.Children {
		w.summaries[c.RoomID] = c
	}
	if !w.mayPreview(h.Room.Summary) {
		return hierarchyRoom{}, false
	}
	return hierarchyRoom{Summary: h.Room.Summary, ChildrenState: orderChildren(h.Room.ChildrenState, w.suggestedOnly)}, true
}

func (w *walker) mayPreview(sum Summary) bool { return w.s.mayPreviewRemote(sum, w.user) }

// remoteSummary is the summary of a room this server does not know, as
// the first of via to answer about it gives it, when user may preview it.
func (s *Service) remoteSummary(ctx context.Context, roomID id.RoomID, via []string, user id.UserID) (any, error) {
	h, err := s.remote.answers.Get(ctx, hierarchyKey{roomID, false}, remoteRequestTimeout*maxViaServers, func(ctx context.Context) (*federationHierarchy, error) {
		return s.remote.ask(ctx, roomID, via, false)
	})
	if err != nil || !s.mayPreviewRemote(h.Room.Summary, user) {
		if err != nil {
			s.remote.log.Debug("room summary of another server", "room_id", roomID, "via", via, "err", err)
		}
		return nil, mxhttp.NotFound("room not found")
	}
	return summaryResponse{Summary: h.Room.Summary, Membership: "leave"}, nil
}

// mayPreviewRemote is canPreview for a room only another server knows,
// judged by its summary: world-readable, joinable or knockable by anyone,
// or restricted to a room the user is joined to here.
func (s *Service) mayPreviewRemote(sum Summary, user id.UserID) bool {
	return openToPreview(&sum, func(allowed id.RoomID) bool {
		return s.rooms.Membership(user, allowed) == "join"
	})
}

// ask asks the servers of via, in turn, about a room, until one answers
// with it.
func (r *remoteSpaces) ask(ctx context.Context, roomID id.RoomID, via []string, suggestedOnly bool) (*federationHierarchy, error) {
	var err error
	asked := 0
	for _, server := range via {
		if asked == maxViaServers {
			break
		}
		if server == r.serverName || config.ValidServerName(server) != nil {
			continue
		}
		asked++
		var h *federationHierarchy
		if h, err = r.askOne(ctx, server, roomID, suggestedOnly); err == nil {
			return h, nil
		}
	}
	if err == nil {
		err = remote.BadGateway("no server to ask about %s", roomID)
	}
	return nil, err
}

// askOne asks one server about a room and checks its answer.
func (r *remoteSpaces) askOne(ctx context.Context, server string, roomID id.RoomID, suggestedOnly bool) (*federationHierarchy, error) {
	ctx, cancel := context.WithTimeout(ctx, remoteRequestTimeout)
	defer cancel()
	var h federationHierarchy
	_, _, err := r.fed.MakeFullRequest(ctx, federation.RequestParams{
		ServerName: server, Method: http.MethodGet, Path: federation.URLPath{"v1", "hierarchy", roomID},
		Query: url.Values{"suggested_only": {strconv.FormatBool(suggestedOnly)}}, Authenticate: true, ResponseJSON: &h,
	})
	if err != nil {
		return nil, remote.Error(server, err)
	}
	if h.Room.RoomID != roomID {
		return nil, remote.BadGateway("%s answered about %s when asked about %s", server, h.Room.RoomID, roomID)
	}
	h.Room.ChildrenState = validChildStates(h.Room.ChildrenState)
	children := h.Children[:0]
	for _, c := range h.Children {
		if len(children) < maxRemoteChildren && c.RoomID != "" {
			children = append(children, c)
		}
	}
	h.Children = children
	return &h, nil
}

// validChildStates keeps at most maxRemoteChildren child events of another
// server whose content is a JSON object.
func validChildStates(list []childState) []childState {
	out := list[:0]
	for _, c := range list {
		var obj map[string]json.RawMessage
		if len(out) < maxRemoteChildren && json.Unmarshal(c.Content, &obj) == nil && obj != nil {
			out = append(out, c)
		}
	}
	return out
}
