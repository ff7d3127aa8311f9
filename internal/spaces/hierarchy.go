package spaces

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Bounds of a hierarchy request.
const (
	defaultLimit    = 50
	maxLimit        = 100
	defaultMaxDepth = 10
	maxMaxDepth     = 50
	// maxWalk bounds how many rooms one walk visits.
	maxWalk = 2000
)

// childState is an m.space.child event in stripped form, with its
// origin_server_ts.
type childState struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         id.UserID       `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

// hierarchyRoom is one room of a hierarchy page.
type hierarchyRoom struct {
	Summary
	ChildrenState []childState `json:"children_state"`
}

type hierarchyResponse struct {
	Rooms     []hierarchyRoom `json:"rooms"`
	NextBatch string          `json:"next_batch,omitempty"`
}

// hierarchyQuery is a request's parameters; a page token carries the
// walk's settings so later pages cannot change them.
type hierarchyQuery struct {
	suggestedOnly bool
	maxDepth      int
	limit         int
	offset        int
}

func parseHierarchyQuery(r *http.Request) (hierarchyQuery, error) {
	q := r.URL.Query()
	hq := hierarchyQuery{maxDepth: defaultMaxDepth, limit: defaultLimit}
	switch v := q.Get("suggested_only"); v {
	case "", "false":
	case "true":
		hq.suggestedOnly = true
	default:
		return hq, mxhttp.InvalidParam("suggested_only must be true or false")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return hq, mxhttp.InvalidParam("limit must be a positive integer")
		}
		hq.limit = min(n, maxLimit)
	}
	if v := q.Get("max_depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return hq, mxhttp.InvalidParam("max_depth must be a non-negative integer")
		}
		hq.maxDepth = min(n, maxMaxDepth)
	}
	if from := q.Get("from"); from != "" {
		var off, depth int
		var sugg string
		if _, err := fmt.Sscanf(strings.ReplaceAll(from, "_", " "), "h%d %d %s", &off, &depth, &sugg); err != nil || off < 0 {
			return hq, mxhttp.InvalidParam("unknown from token")
		}
		if depth != hq.maxDepth || sugg != strconv.FormatBool(hq.suggestedOnly) {
			return hq, mxhttp.InvalidParam("suggested_only and max_depth cannot change on paginated requests")
		}
		hq.offset = off
	}
	return hq, nil
}

func (hq hierarchyQuery) token(offset int) string {
	return fmt.Sprintf("h%d_%d_%t", offset, hq.maxDepth, hq.suggestedOnly)
}

func (s *Service) getHierarchy(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	root := id.RoomID(r.PathValue("roomId"))
	hq, err := parseHierarchyQuery(r)
	if err != nil {
		return nil, err
	}
	v, err := s.view(r.Context(), root)
	if err != nil {
		return nil, err
	}
	if v == nil || !s.canPreview(v, sess.UserID) {
		return nil, mxhttp.Forbidden("you are not allowed to view this room")
	}
	resp := hierarchyResponse{Rooms: []hierarchyRoom{}}
	// The walk is deterministic, so a page is the walk's rooms from the
	// token's offset on.
	seen := 0
	err = s.walk(r.Context(), v, sess.UserID, hq, func(hr hierarchyRoom) bool {
		seen++
		if seen <= hq.offset {
			return true
		}
		if len(resp.Rooms) == hq.limit {
			resp.NextBatch = hq.token(seen - 1)
			return false
		}
		resp.Rooms = append(resp.Rooms, hr)
		return true
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// walk visits the space tree under root depth first, calling visit for
// each room the user may preview until it returns false. Children are
// ordered by their order field, then the child event's timestamp, then
// room ID; a room is visited once. A child this server does not know is
// asked of the servers its m.space.child event names (see remoteRoom),
// once federation is on.
func (s *Service) walk(ctx context.Context, root *roomView, user id.UserID, hq hierarchyQuery, visit func(hierarchyRoom) bool) error {
	type item struct {
		room  hierarchyRoom
		depth int
	}
	w := &walker{s: s, user: user, suggestedOnly: hq.suggestedOnly, summaries: map[id.RoomID]Summary{}}
	stack := []item{{w.localRoom(root), 0}}
	visited := map[id.RoomID]bool{root.RoomID: true}
	for n := 0; len(stack) > 0 && n < maxWalk; n++ {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !visit(it.room) {
			return nil
		}
		if it.depth >= hq.maxDepth {
			continue
		}
		// Push in reverse so the first child is visited first.
		for i := len(it.room.ChildrenState) - 1; i >= 0; i-- {
			c := it.room.ChildrenState[i]
			childID := id.RoomID(c.StateKey)
			if visited[childID] {
				continue
			}
			child, ok, err := w.room(ctx, childID, c.via())
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			visited[childID] = true
			stack = append(stack, item{child, it.depth + 1})
		}
	}
	return nil
}

// walker holds what one walk learnt: how many remote requests it made and
// the summaries other servers gave of rooms they did not walk into.
type walker struct {
	s             *Service
	user          id.UserID
	suggestedOnly bool
	requests      int
	summaries     map[id.RoomID]Summary
}

// room returns a child room as the walk shows it, or false when the user
// may not preview it or nothing is known of it.
func (w *walker) room(ctx context.Context, roomID id.RoomID, via []string) (hierarchyRoom, bool, error) {
	v, err := w.s.view(ctx, roomID)
	if err != nil {
		return hierarchyRoom{}, false, err
	}
	if v == nil {
		hr, ok := w.remoteRoom(ctx, roomID, via)
		return hr, ok, nil
	}
	if !w.s.canPreview(v, w.user) {
		return hierarchyRoom{}, false, nil
	}
	return w.localRoom(v), true, nil
}

// localRoom is a room of this server as the walk shows it.
func (w *walker) localRoom(v *roomView) hierarchyRoom {
	return hierarchyRoom{Summary: v.Summary, ChildrenState: w.s.children(v, w.suggestedOnly)}
}

// children returns the room's valid m.space.child events in the spec's
// order, only the suggested ones if suggestedOnly.
func (s *Service) children(v *roomView, suggestedOnly bool) []childState {
	list := make([]childState, 0, len(v.children))
	for _, ev := range v.children {
		list = append(list, childState{
			Type: ev.Type, StateKey: *ev.StateKey, Content: json.RawMessage(ev.PDU.Content), Sender: ev.Sender, OriginServerTS: ev.TS,
		})
	}
	return orderChildren(list, suggestedOnly)
}

// childContent is what the walk reads of an m.space.child event.
type childContent struct {
	Via       []string `json:"via"`
	Order     any      `json:"order"`
	Suggested bool     `json:"suggested"`
}

func (c childState) content() childContent {
	var cc childContent
	json.Unmarshal(c.Content, &cc)
	return cc
}

func (c childState) via() []string { return c.content().Via }

// orderChildren returns the valid m.space.child events of list (a room ID
// as state key, a via list) in the spec's order: those with a valid order
// field first, by order, then by timestamp, then by room ID; only the
// suggested ones if suggestedOnly.
func orderChildren(list []childState, suggestedOnly bool) []childState {
	type keyed struct {
		c     childState
		order string
	}
	var keep []keyed
	for _, c := range list {
		cc := c.content()
		if c.Type != "m.space.child" || !strings.HasPrefix(c.StateKey, "!") || len(cc.Via) == 0 || suggestedOnly && !cc.Suggested {
			continue
		}
		order, _ := cc.Order.(string)
		if !validOrder(order) {
			order = ""
		}
		keep = append(keep, keyed{c, order})
	}
	slices.SortFunc(keep, func(a, b keyed) int {
		// Children with a valid order come first.
		if (a.order == "") != (b.order == "") {
			if a.order == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(strings.Compare(a.order, b.order), cmp.Compare(a.c.OriginServerTS, b.c.OriginServerTS), strings.Compare(a.c.StateKey, b.c.StateKey))
	})
	out := make([]childState, len(keep))
	for i, k := range keep {
		out[i] = k.c
	}
	return out
}

// validOrder reports whether an order string is valid: at most 50
// characters between 0x20 and 0x7E.
func validOrder(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
