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
	"github.com/matrixos/matrixos/internal/rooms"
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
// room ID; a room is visited once.
func (s *Service) walk(ctx context.Context, root *roomView, user id.UserID, hq hierarchyQuery, visit func(hierarchyRoom) bool) error {
	type item struct {
		v     *roomView
		depth int
	}
	stack := []item{{root, 0}}
	visited := map[id.RoomID]bool{root.RoomID: true}
	for n := 0; len(stack) > 0 && n < maxWalk; n++ {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		children := s.children(it.v, hq.suggestedOnly)
		hr := hierarchyRoom{Summary: it.v.Summary, ChildrenState: make([]childState, 0, len(children))}
		for _, c := range children {
			hr.ChildrenState = append(hr.ChildrenState, childState{
				Type: c.Type, StateKey: *c.StateKey, Content: json.RawMessage(c.PDU.Content), Sender: c.Sender, OriginServerTS: c.TS,
			})
		}
		if !visit(hr) {
			return nil
		}
		if it.depth >= hq.maxDepth {
			continue
		}
		// Push in reverse so the first child is visited first.
		for i := len(children) - 1; i >= 0; i-- {
			childID := id.RoomID(*children[i].StateKey)
			if visited[childID] {
				continue
			}
			cv, err := s.view(ctx, childID)
			if err != nil {
				return err
			}
			if cv == nil || !s.canPreview(cv, user) {
				continue
			}
			visited[childID] = true
			stack = append(stack, item{cv, it.depth + 1})
		}
	}
	return nil
}

// children returns the room's valid m.space.child events in the spec's
// order, only the suggested ones if suggestedOnly.
func (s *Service) children(v *roomView, suggestedOnly bool) []*rooms.Event {
	type keyed struct {
		ev    *rooms.Event
		order string
	}
	var list []keyed
	for _, ev := range v.children {
		var c struct {
			Order     any  `json:"order"`
			Suggested bool `json:"suggested"`
		}
		json.Unmarshal(ev.PDU.Content, &c)
		if suggestedOnly && !c.Suggested {
			continue
		}
		order, _ := c.Order.(string)
		if !validOrder(order) {
			order = ""
		}
		list = append(list, keyed{ev, order})
	}
	slices.SortFunc(list, func(a, b keyed) int {
		// Children with a valid order come first.
		if (a.order == "") != (b.order == "") {
			if a.order == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(strings.Compare(a.order, b.order), cmp.Compare(a.ev.TS, b.ev.TS), strings.Compare(*a.ev.StateKey, *b.ev.StateKey))
	})
	out := make([]*rooms.Event, len(list))
	for i, k := range list {
		out[i] = k.ev
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
