// Package threading serves MSC2836's threading relationships where
// clients still use them: events that name a parent in
// content["m.relationship"] ({"rel_type", "event_id"}), and POST
// /_matrix/client/unstable/event_relationships, which walks a thread from
// an anchor event down to its children or up to its parents within depth,
// breadth and count limits, returning only events the user may see.
//
// The children of each event are indexed as events are stored (an
// OnPersist hook), and kept when an event is redacted, as the MSC wants
// threads to survive moderation. Each event returned carries
// unsigned.children (the number of children by rel_type) and
// unsigned.children_hash (the unpadded base64 SHA-256 of the sorted child
// event IDs).
//
// This node walks only the events it has: it neither asks other servers
// (the MSC's federated /event_relationships) nor pages (no next_batch;
// limited says when the limit cut the walk), and does not implement the
// MSC's cross-room extension. The MSC names no unstable_features flag.
package threading

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Migrations are the children index.
var Migrations = []storage.Migration{{
	Component: "threading",
	Version:   1,
	SQL: `
CREATE TABLE msc2836_children (
	parent_id TEXT NOT NULL,
	child_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	rel_type TEXT NOT NULL,
	child_ts BIGINT NOT NULL,
	PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX msc2836_children_room ON msc2836_children (room_id);
`,
}}

// Rooms is what the service needs of the room engine.
type Rooms interface {
	Event(ctx context.Context, evID id.EventID) (*rooms.Event, error)
	Visibility(ctx context.Context, roomID id.RoomID, user id.UserID) (*rooms.Visibility, error)
	ReadableUpTo(ctx context.Context, user id.UserID, roomID id.RoomID, allowLeft bool) (upTo int64, membership string, ok bool, err error)
}

// Service indexes relationships and answers /event_relationships.
type Service struct {
	db    *storage.DB
	acc   *accounts.Service
	rooms Rooms
}

// New returns the service.
func New(db *storage.DB, acc *accounts.Service, r Rooms) *Service {
	return &Service{db: db, acc: acc, rooms: r}
}

// Path is the endpoint, under the unstable prefix the MSC's
// implementations use.
const Path = "/_matrix/client/unstable/event_relationships"

// Routes registers the endpoint.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+Path, s.acc.Auth(s.eventRelationships))
}

// relationship is an event's m.relationship.
type relationship struct {
	RelType string     `json:"rel_type"`
	EventID id.EventID `json:"event_id"`
}

// parentOf returns the relationship ev names, if it names a valid one: an
// event ID other than its own, with a rel_type.
func parentOf(ev *rooms.Event) (relationship, bool) {
	if ev.PDU == nil {
		return relationship{}, false
	}
	var c struct {
		Rel *relationship `json:"m.relationship"`
	}
	if json.Unmarshal(ev.Content(), &c) != nil || c.Rel == nil {
		return relationship{}, false
	}
	rel := *c.Rel
	if rel.RelType == "" || !strings.HasPrefix(string(rel.EventID), "$") || len(rel.EventID) > 255 || rel.EventID == ev.ID {
		return relationship{}, false
	}
	return rel, true
}

// OnPersist indexes an event that names a parent (a rooms.Engine
// OnPersist hook).
func (s *Service) OnPersist(ctx context.Context, tx *storage.Tx, ev *rooms.Event, info *rooms.RoomInfo) error {
	if ev.Rejected {
		return nil
	}
	rel, ok := parentOf(ev)
	if !ok {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO msc2836_children (parent_id, child_id, room_id, rel_type, child_ts)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (parent_id, child_id) DO NOTHING`,
		rel.EventID, ev.ID, ev.RoomID, rel.RelType, ev.TS); err != nil {
		return fmt.Errorf("index event relationship: %w", err)
	}
	return nil
}

// PurgeRoom drops a purged room's relationships (a rooms.Engine OnPurge
// hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if _, err := tx.Exec(ctx, "DELETE FROM msc2836_children WHERE room_id = $1", roomID); err != nil {
		return fmt.Errorf("purge event relationships: %w", err)
	}
	return nil
}

// child is an indexed child of an event.
type child struct {
	id      id.EventID
	relType string
	ts      int64
}

// children returns an event's children, oldest first, or newest first.
func (s *Service) children(ctx context.Context, parent id.EventID, recentFirst bool) ([]child, error) {
	rows, err := s.db.Query(ctx, "SELECT child_id, rel_type, child_ts FROM msc2836_children WHERE parent_id = $1", parent)
	if err != nil {
		return nil, fmt.Errorf("load event children: %w", err)
	}
	defer rows.Close()
	var out []child
	for rows.Next() {
		var c child
		if err := rows.Scan(&c.id, &c.relType, &c.ts); err != nil {
			return nil, fmt.Errorf("load event children: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load event children: %w", err)
	}
	slices.SortFunc(out, func(a, b child) int {
		c := cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
		if recentFirst {
			return -c
		}
		return c
	})
	return out, nil
}

// request is the body of /event_relationships, with the MSC's defaults.
type request struct {
	EventID         id.EventID `json:"event_id"`
	RoomID          id.RoomID  `json:"room_id"`
	MaxDepth        *int       `json:"max_depth"`
	MaxBreadth      *int       `json:"max_breadth"`
	Limit           *int       `json:"limit"`
	DepthFirst      bool       `json:"depth_first"`
	RecentFirst     *bool      `json:"recent_first"`
	IncludeParent   bool       `json:"include_parent"`
	IncludeChildren bool       `json:"include_children"`
	Direction       string     `json:"direction"`
	Batch           string     `json:"batch"`
}

// maxLimit is the most events one answer carries (the MSC lets servers
// lower the client's limit).
const maxLimit = 100

// walk is one /event_relationships request being answered.
type walk struct {
	s    *Service
	ctx  context.Context
	sess *accounts.Session
	req  request

	maxDepth, maxBreadth, limit int // negative: unbounded (depth, breadth)
	recentFirst                 bool

	rooms   map[id.RoomID]*roomView
	seen    map[id.EventID]bool
	events  []*rooms.Event
	limited bool
}

// roomView is what the user may see of one room.
type roomView struct {
	ok   bool
	upTo int64
	vis  *rooms.Visibility
}

func (s *Service) eventRelationships(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req request
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.EventID == "" {
		return nil, mxhttp.MissingParam("event_id is required")
	}
	switch req.Direction {
	case "":
		req.Direction = "down"
	case "up", "down":
	default:
		return nil, mxhttp.InvalidParam("direction must be up or down")
	}
	if req.Batch != "" {
		return nil, mxhttp.InvalidParam("this server does not paginate event relationships (no next_batch is ever given)")
	}
	wk := &walk{
		s: s, ctx: r.Context(), sess: sess, req: req,
		maxDepth: intOr(req.MaxDepth, 3), maxBreadth: intOr(req.MaxBreadth, 10), limit: min(intOr(req.Limit, maxLimit), maxLimit),
		recentFirst: req.RecentFirst == nil || *req.RecentFirst,
		rooms:       map[id.RoomID]*roomView{}, seen: map[id.EventID]bool{},
	}
	if wk.limit <= 0 {
		return nil, mxhttp.InvalidParam("limit must be positive")
	}
	if err := wk.run(); err != nil {
		return nil, err
	}
	return wk.answer()
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// visible loads an event the user may see, or nil.
func (wk *walk) visible(evID id.EventID) (*rooms.Event, error) {
	ev, err := wk.s.rooms.Event(wk.ctx, evID)
	if err != nil {
		if me, ok := mxhttp.AsError(err); ok && me.Status == http.StatusNotFound {
			return nil, nil
		}
		return nil, err
	}
	if ev == nil || ev.Pos == 0 || ev.Rejected {
		return nil, nil
	}
	view := wk.rooms[ev.RoomID]
	if view == nil {
		view = &roomView{}
		upTo, _, ok, err := wk.s.rooms.ReadableUpTo(wk.ctx, wk.sess.UserID, ev.RoomID, true)
		if err != nil {
			return nil, err
		}
		if ok {
			if view.vis, err = wk.s.rooms.Visibility(wk.ctx, ev.RoomID, wk.sess.UserID); err != nil {
				return nil, err
			}
			view.ok, view.upTo = true, upTo
		}
		wk.rooms[ev.RoomID] = view
	}
	if !view.ok || ev.Pos > view.upTo || !view.vis.CanSee(ev) {
		return nil, nil
	}
	return ev, nil
}

// add puts an event in the answer once; it reports false when the limit
// is reached.
func (wk *walk) add(ev *rooms.Event) bool {
	if wk.seen[ev.ID] {
		return true
	}
	if len(wk.events) >= wk.limit {
		wk.limited = true
		return false
	}
	wk.seen[ev.ID] = true
	wk.events = append(wk.events, ev)
	return true
}

// node is an event reached by the walk, depth hops from the anchor.
type node struct {
	ev    *rooms.Event
	depth int
}

// run walks the thread as the MSC's server algorithm does: the anchor,
// its parent and children when asked, then the walk in the request's
// direction, breadth or depth first, within max_depth and max_breadth.
func (wk *walk) run() error {
	anchor, err := wk.visible(wk.req.EventID)
	if err != nil {
		return err
	}
	if anchor == nil || (wk.req.RoomID != "" && anchor.RoomID != wk.req.RoomID) {
		return mxhttp.NotFound("event not found")
	}
	wk.add(anchor)
	if wk.req.IncludeParent {
		if rel, ok := parentOf(anchor); ok {
			parent, err := wk.visible(rel.EventID)
			if err != nil {
				return err
			}
			if parent != nil && !wk.add(parent) {
				return nil
			}
		}
	}
	if wk.req.IncludeChildren {
		kids, err := wk.visibleChildren(anchor)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if !wk.add(k) {
				return nil
			}
		}
	}
	queue := []node{{anchor, 0}}
	visited := map[id.EventID]bool{anchor.ID: true}
	for len(queue) > 0 {
		var n node
		if wk.req.DepthFirst {
			n, queue = queue[len(queue)-1], queue[:len(queue)-1]
		} else {
			n, queue = queue[0], queue[1:]
		}
		next, err := wk.next(n.ev)
		if err != nil {
			return err
		}
		depth := n.depth + 1
		if wk.maxDepth >= 0 && depth > wk.maxDepth {
			continue
		}
		var reached []node
		for i, ev := range next {
			if wk.maxBreadth >= 0 && i+1 > wk.maxBreadth {
				break
			}
			if visited[ev.ID] {
				continue
			}
			visited[ev.ID] = true
			if !wk.add(ev) {
				return nil
			}
			reached = append(reached, node{ev, depth})
		}
		if wk.req.DepthFirst {
			slices.Reverse(reached) // the first child is walked first
		}
		queue = append(queue, reached...)
	}
	return nil
}

// next returns the events one step from ev in the walk's direction that
// the user may see: its children, or its parent.
func (wk *walk) next(ev *rooms.Event) ([]*rooms.Event, error) {
	if wk.req.Direction == "down" {
		return wk.visibleChildren(ev)
	}
	rel, ok := parentOf(ev)
	if !ok {
		return nil, nil
	}
	parent, err := wk.visible(rel.EventID)
	if err != nil || parent == nil {
		return nil, err
	}
	return []*rooms.Event{parent}, nil
}

// visibleChildren returns the children of ev the user may see, in the
// request's order.
func (wk *walk) visibleChildren(ev *rooms.Event) ([]*rooms.Event, error) {
	kids, err := wk.s.children(wk.ctx, ev.ID, wk.recentFirst)
	if err != nil {
		return nil, err
	}
	var out []*rooms.Event
	for _, k := range kids {
		c, err := wk.visible(k.id)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// answer renders the events with their children counts and hashes.
func (wk *walk) answer() (any, error) {
	out := make([]*rooms.ClientEvent, 0, len(wk.events))
	for _, ev := range wk.events {
		ce := ev.Client(rooms.ClientOptions{User: wk.sess.UserID, Device: wk.sess.DeviceID})
		kids, err := wk.s.children(wk.ctx, ev.ID, false)
		if err != nil {
			return nil, err
		}
		unsigned := maps.Clone(ce.Unsigned)
		if unsigned == nil {
			unsigned = map[string]any{}
		}
		counts := map[string]int{}
		ids := make([]string, 0, len(kids))
		for _, k := range kids {
			counts[k.relType]++
			ids = append(ids, string(k.id))
		}
		slices.Sort(ids)
		sum := sha256.Sum256([]byte(strings.Join(ids, "")))
		unsigned["children"] = counts
		unsigned["children_hash"] = base64.RawStdEncoding.EncodeToString(sum[:])
		ce.Unsigned = unsigned
		out = append(out, ce)
	}
	return map[string]any{"events": out, "limited": wk.limited}, nil
}
