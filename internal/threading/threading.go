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
// Over federation the same walk answers POST
// /_matrix/federation/unstable/event_relationships for a server in the
// event's room, with only the events that server may see, as PDUs with
// the same unsigned fields, and their auth chain. A client's walk asks the
// room's other servers when it reaches an event this node lacks (the
// anchor, with room_id given, or a parent), and stores their answer as
// history learnt late (the room engine's backfill checks); when an event
// of such an answer counts other children than this node knows (its
// children_hash differs), the walk asks for that event's children once.
// A walk made for another server never asks further, so two servers
// cannot ask each other in a loop.
//
// A walk cut by the limit says limited and gives a next_batch: the same
// request with batch set continues where the answer stopped (the walk is
// run again and the events already served are skipped, up to maxOffset).
// Walks stay inside the room of the event they start from: children are
// read from that room only, so events of other rooms are never followed
// (the MSC's optional cross-room walk is not offered). The MSC names no
// unstable_features flag.
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
	"strconv"
	"strings"
	"time"

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
	ServerMaySee(ctx context.Context, server string, ev *rooms.Event) (bool, error)
	AuthChain(ctx context.Context, ids []id.EventID) ([]json.RawMessage, error)
	JoinedServers(ctx context.Context, roomID id.RoomID) []string
	Version(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error)
	StoreHistory(ctx context.Context, roomID id.RoomID, origin string, raws []json.RawMessage) (int, error)
	ServerName() string
}

// Ask sends body to server's federated /event_relationships and decodes
// the answer into answer.
type Ask func(ctx context.Context, server string, body, answer any) error

// Service indexes relationships and answers /event_relationships.
type Service struct {
	db    *storage.DB
	acc   *accounts.Service
	rooms Rooms

	// ask reaches other servers; nil on a node that does not federate.
	ask Ask
}

// New returns the service.
func New(db *storage.DB, acc *accounts.Service, r Rooms) *Service {
	return &Service{db: db, acc: acc, rooms: r}
}

// Path is the endpoint, under the unstable prefix the MSC's
// implementations use.
const Path = "/_matrix/client/unstable/event_relationships"

// FederationPath is the federated endpoint, under the unstable prefix
// the MSC's implementations use.
const FederationPath = "/_matrix/federation/unstable/event_relationships"

// Routes registers the endpoint.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+Path, s.acc.Auth(s.eventRelationships))
}

// EnableFederation lets client walks ask other servers through ask, and
// registers the federated endpoint with handle, which authenticates the
// asking server: access refuses a server that may not read a room (not in
// it, or denied by its server ACL), originOf names it.
func (s *Service) EnableFederation(ask Ask, handle func(pattern string, h http.Handler),
	access func(ctx context.Context, origin string, roomID id.RoomID) error, originOf func(*http.Request) string) {
	s.ask = ask
	handle("POST "+FederationPath, mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return s.federatedRelationships(r, &serverViewer{s: s, server: originOf(r), access: access, rooms: map[id.RoomID]bool{}})
	}))
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
	return s.OnBackfill(ctx, tx, ev)
}

// OnBackfill indexes an event learnt late that names a parent (a
// rooms.Engine OnBackfill hook).
func (s *Service) OnBackfill(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
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

// OnReject drops the relationship of an event taken out of the timeline
// (a rooms.Engine OnReject hook).
func (s *Service) OnReject(ctx context.Context, tx *storage.Tx, ev *rooms.Event) error {
	if _, err := tx.Exec(ctx, "DELETE FROM msc2836_children WHERE child_id = $1", ev.ID); err != nil {
		return fmt.Errorf("drop event relationship: %w", err)
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

// maxChildren bounds the children of one event that a walk or a summary
// reads: an event with more (a flood of replies naming it) costs no more.
const maxChildren = 1000

// children returns the children of an event in its own room, oldest first,
// or newest first; at most maxChildren of them, the oldest.
func (s *Service) children(ctx context.Context, parent id.EventID, roomID id.RoomID, recentFirst bool) ([]child, error) {
	rows, err := s.db.Query(ctx, fmt.Sprintf(`SELECT child_id, rel_type, child_ts FROM msc2836_children
WHERE parent_id = $1 AND room_id = $2 ORDER BY child_ts, child_id LIMIT %d`, maxChildren), parent, roomID)
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
	RoomID          id.RoomID  `json:"room_id,omitempty"`
	MaxDepth        *int       `json:"max_depth,omitempty"`
	MaxBreadth      *int       `json:"max_breadth,omitempty"`
	Limit           *int       `json:"limit,omitempty"`
	DepthFirst      bool       `json:"depth_first"`
	RecentFirst     *bool      `json:"recent_first,omitempty"`
	IncludeParent   bool       `json:"include_parent"`
	IncludeChildren bool       `json:"include_children"`
	Direction       string     `json:"direction"`
	Batch           string     `json:"batch,omitempty"`
}

// Bounds of a walk.
const (
	// maxLimit is the most events one answer carries (the MSC lets
	// servers lower the client's limit).
	maxLimit = 100
	// maxOffset bounds how far next_batch tokens page into one walk.
	maxOffset = 1000
	// maxFetches bounds the federated requests one client walk makes.
	maxFetches = 8
	// fetchTimeout bounds one federated request.
	fetchTimeout = 10 * time.Second
)

// viewer decides which events a walk may return.
type viewer interface {
	canSee(ctx context.Context, ev *rooms.Event) (bool, error)
	// readsRoom reports whether the viewer may read any of a room.
	readsRoom(ctx context.Context, roomID id.RoomID) (bool, error)
}

// walk is one /event_relationships request being answered.
type walk struct {
	s    *Service
	ctx  context.Context
	req  request
	view viewer

	maxDepth, maxBreadth int // negative: unbounded
	limit, offset        int // the walk collects offset+limit events
	recentFirst          bool
	// federate lets the walk ask other servers for events it lacks (a
	// client's walk only).
	federate bool
	asked    map[id.EventID]bool
	fetches  int

	seen    map[id.EventID]bool
	events  []*rooms.Event
	limited bool
}

// decodeRequest reads and checks a request body, setting the MSC's
// defaults.
func decodeRequest(r *http.Request) (request, error) {
	var req request
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if req.EventID == "" {
		return req, mxhttp.MissingParam("event_id is required")
	}
	switch req.Direction {
	case "":
		req.Direction = "down"
	case "up", "down":
	default:
		return req, mxhttp.InvalidParam("direction must be up or down")
	}
	return req, nil
}

// newWalk sets up the walk of req for view.
func (s *Service) newWalk(ctx context.Context, req request, view viewer) (*walk, error) {
	wk := &walk{
		s: s, ctx: ctx, req: req, view: view,
		maxDepth: intOr(req.MaxDepth, 3), maxBreadth: intOr(req.MaxBreadth, 10), limit: min(intOr(req.Limit, maxLimit), maxLimit),
		recentFirst: req.RecentFirst == nil || *req.RecentFirst,
		asked:       map[id.EventID]bool{}, seen: map[id.EventID]bool{},
	}
	if wk.limit <= 0 {
		return nil, mxhttp.InvalidParam("limit must be positive")
	}
	if req.Batch != "" {
		off, err := strconv.Atoi(req.Batch)
		if err != nil || off <= 0 || off > maxOffset {
			return nil, mxhttp.InvalidParam("batch is not a token this server gave")
		}
		wk.offset = off
	}
	return wk, nil
}

func (s *Service) eventRelationships(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	req, err := decodeRequest(r)
	if err != nil {
		return nil, err
	}
	wk, err := s.newWalk(r.Context(), req, &userViewer{s: s, user: sess.UserID, rooms: map[id.RoomID]*roomView{}})
	if err != nil {
		return nil, err
	}
	wk.federate = s.ask != nil
	if err := wk.run(); err != nil {
		return nil, err
	}
	out := make([]*rooms.ClientEvent, 0, len(wk.events))
	for _, ev := range wk.page() {
		ce := ev.Client(rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID})
		unsigned := maps.Clone(ce.Unsigned)
		if unsigned == nil {
			unsigned = map[string]any{}
		}
		if err := s.addChildren(r.Context(), ev, unsigned); err != nil {
			return nil, err
		}
		ce.Unsigned = unsigned
		out = append(out, ce)
	}
	return wk.answer(map[string]any{"events": out}), nil
}

// federatedRelationships answers another server's walk: the events it may
// see, as PDUs with their children in unsigned, and their auth chain.
func (s *Service) federatedRelationships(r *http.Request, view *serverViewer) (any, error) {
	req, err := decodeRequest(r)
	if err != nil {
		return nil, err
	}
	wk, err := s.newWalk(r.Context(), req, view)
	if err != nil {
		return nil, err
	}
	if err := wk.run(); err != nil {
		return nil, err
	}
	page := wk.page()
	pdus := make([]json.RawMessage, 0, len(page))
	ids := make([]id.EventID, 0, len(page))
	for _, ev := range page {
		unsigned := map[string]any{}
		if err := s.addChildren(r.Context(), ev, unsigned); err != nil {
			return nil, err
		}
		raw, err := withUnsigned(ev.JSON, unsigned)
		if err != nil {
			return nil, fmt.Errorf("event relationships: %w", err)
		}
		pdus = append(pdus, raw)
		ids = append(ids, ev.ID)
	}
	chain, err := s.rooms.AuthChain(r.Context(), ids)
	if err != nil {
		return nil, err
	}
	if chain == nil {
		chain = []json.RawMessage{}
	}
	return wk.answer(map[string]any{"events": pdus, "auth_chain": chain}), nil
}

// withUnsigned returns the PDU raw with fields added to its unsigned
// object.
func withUnsigned(raw json.RawMessage, fields map[string]any) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	unsigned := map[string]any{}
	if u, ok := obj["unsigned"]; ok {
		if err := json.Unmarshal(u, &unsigned); err != nil {
			return nil, err
		}
	}
	maps.Copy(unsigned, fields)
	u, err := json.Marshal(unsigned)
	if err != nil {
		return nil, err
	}
	obj["unsigned"] = u
	return json.Marshal(obj)
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// page returns the events of this answer: those after the offset.
func (wk *walk) page() []*rooms.Event {
	return wk.events[min(wk.offset, len(wk.events)):]
}

// answer completes a response body with limited and next_batch.
func (wk *walk) answer(body map[string]any) map[string]any {
	body["limited"] = wk.limited
	if next := wk.offset + wk.limit; wk.limited && next <= maxOffset {
		body["next_batch"] = strconv.Itoa(next)
	}
	return body
}

// userViewer shows what a user may see under history visibility.
type userViewer struct {
	s     *Service
	user  id.UserID
	rooms map[id.RoomID]*roomView
}

// roomView is what the user may see of one room.
type roomView struct {
	ok   bool
	upTo int64
	vis  *rooms.Visibility
}

// room loads what the user may see of a room.
func (v *userViewer) room(ctx context.Context, roomID id.RoomID) (*roomView, error) {
	if view := v.rooms[roomID]; view != nil {
		return view, nil
	}
	view := &roomView{}
	upTo, _, ok, err := v.s.rooms.ReadableUpTo(ctx, v.user, roomID, true)
	if err != nil {
		return nil, err
	}
	if ok {
		if view.vis, err = v.s.rooms.Visibility(ctx, roomID, v.user); err != nil {
			return nil, err
		}
		view.ok, view.upTo = true, upTo
	}
	v.rooms[roomID] = view
	return view, nil
}

func (v *userViewer) canSee(ctx context.Context, ev *rooms.Event) (bool, error) {
	view, err := v.room(ctx, ev.RoomID)
	if err != nil {
		return false, err
	}
	return view.ok && ev.Pos <= view.upTo && view.vis.CanSee(ev), nil
}

func (v *userViewer) readsRoom(ctx context.Context, roomID id.RoomID) (bool, error) {
	view, err := v.room(ctx, roomID)
	if err != nil {
		return false, err
	}
	return view.ok, nil
}

// serverViewer shows what another server may see: events of rooms it may
// read, under history visibility for servers.
type serverViewer struct {
	s      *Service
	server string
	access func(ctx context.Context, origin string, roomID id.RoomID) error
	rooms  map[id.RoomID]bool
}

func (v *serverViewer) readsRoom(ctx context.Context, roomID id.RoomID) (bool, error) {
	ok, known := v.rooms[roomID]
	if !known {
		ok = v.access(ctx, v.server, roomID) == nil
		v.rooms[roomID] = ok
	}
	return ok, nil
}

func (v *serverViewer) canSee(ctx context.Context, ev *rooms.Event) (bool, error) {
	if ok, err := v.readsRoom(ctx, ev.RoomID); err != nil || !ok {
		return false, err
	}
	return v.s.rooms.ServerMaySee(ctx, v.server, ev)
}

// stored loads an event of the timeline, or nil when this node lacks it.
func (wk *walk) stored(evID id.EventID) (*rooms.Event, error) {
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
	return ev, nil
}

// visible loads an event the viewer may see, or nil. An event this node
// lacks is asked of the servers of roomID (when known, and the viewer may
// read the room) first.
func (wk *walk) visible(evID id.EventID, roomID id.RoomID) (*rooms.Event, error) {
	ev, err := wk.stored(evID)
	if err != nil {
		return nil, err
	}
	if ev == nil && roomID != "" && wk.federate {
		if ok, err := wk.view.readsRoom(wk.ctx, roomID); err != nil || !ok {
			return nil, err
		}
		if err := wk.fetch(evID, roomID); err != nil {
			return nil, err
		}
		if ev, err = wk.stored(evID); err != nil {
			return nil, err
		}
	}
	if ev == nil {
		return nil, nil
	}
	if ok, err := wk.view.canSee(wk.ctx, ev); err != nil || !ok {
		return nil, err
	}
	return ev, nil
}

// federatedAnswer is another server's /event_relationships answer.
type federatedAnswer struct {
	Events []json.RawMessage `json:"events"`
}

// fetch asks the room's other servers, one after another until one
// answers, to walk from evID with the client's parameters, and stores
// what they send. Each event is asked about once per walk, and a walk
// asks at most maxFetches times.
func (wk *walk) fetch(evID id.EventID, roomID id.RoomID) error {
	if wk.asked[evID] {
		return nil
	}
	wk.asked[evID] = true
	body := wk.req
	body.EventID, body.RoomID, body.Batch = evID, roomID, ""
	return wk.askServers(roomID, body, true)
}

// askServers sends body to the room's servers until one answers, and
// stores its events; with explore set, it asks again for the children of
// an answered event whose children hash differs from the one known here.
func (wk *walk) askServers(roomID id.RoomID, body request, explore bool) error {
	self := wk.s.rooms.ServerName()
	for _, server := range wk.s.rooms.JoinedServers(wk.ctx, roomID) {
		if server == self {
			continue
		}
		if wk.fetches >= maxFetches || wk.ctx.Err() != nil {
			return nil
		}
		wk.fetches++
		var ans federatedAnswer
		ctx, cancel := context.WithTimeout(wk.ctx, fetchTimeout)
		err := wk.s.ask(ctx, server, body, &ans)
		cancel()
		if err != nil {
			continue // another server of the room may answer
		}
		evs := ans.Events[:min(len(ans.Events), maxLimit)]
		if _, err := wk.s.rooms.StoreHistory(wk.ctx, roomID, server, evs); err != nil {
			return err
		}
		if explore {
			return wk.exploreChildren(roomID, evs)
		}
		return nil
	}
	return nil
}

// exploreChildren asks for the children of each event of an answer whose
// children_hash (the children its server knows) differs from the hash of
// the children known here, once: the event is explored afterwards
// whatever that answer brings, as this node may know children the other
// server does not.
func (wk *walk) exploreChildren(roomID id.RoomID, raws []json.RawMessage) error {
	version, err := wk.s.rooms.Version(wk.ctx, roomID)
	if err != nil {
		return err
	}
	for _, raw := range raws {
		var pdu struct {
			Unsigned struct {
				ChildrenHash string `json:"children_hash"`
			} `json:"unsigned"`
		}
		if json.Unmarshal(raw, &pdu) != nil || pdu.Unsigned.ChildrenHash == "" {
			continue
		}
		evID := rooms.EventIDOf(version, raw)
		if evID == "" || wk.asked[evID] {
			continue
		}
		kids, err := wk.s.children(wk.ctx, evID, roomID, false)
		if err != nil {
			return err
		}
		if _, hash := summarize(kids); hash == pdu.Unsigned.ChildrenHash {
			continue
		}
		wk.asked[evID] = true
		depth, breadth, limit := 1, -1, maxLimit
		body := request{EventID: evID, RoomID: roomID, Direction: "down", MaxDepth: &depth, MaxBreadth: &breadth, Limit: &limit,
			RecentFirst: wk.req.RecentFirst}
		if err := wk.askServers(roomID, body, false); err != nil {
			return err
		}
	}
	return nil
}

// add puts an event in the answer once; it reports false when the limit
// is reached.
func (wk *walk) add(ev *rooms.Event) bool {
	if wk.seen[ev.ID] {
		return true
	}
	if len(wk.events) >= wk.offset+wk.limit {
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
	anchor, err := wk.visible(wk.req.EventID, wk.req.RoomID)
	if err != nil {
		return err
	}
	if anchor == nil || (wk.req.RoomID != "" && anchor.RoomID != wk.req.RoomID) {
		return mxhttp.NotFound("event not found")
	}
	wk.add(anchor)
	if wk.req.IncludeParent {
		parent, err := wk.parent(anchor)
		if err != nil {
			return err
		}
		if parent != nil && !wk.add(parent) {
			return nil
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
		depth := n.depth + 1
		if wk.maxDepth >= 0 && depth > wk.maxDepth {
			continue
		}
		next, err := wk.next(n.ev)
		if err != nil {
			return err
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

// parent returns the parent of ev the viewer may see, or nil.
func (wk *walk) parent(ev *rooms.Event) (*rooms.Event, error) {
	rel, ok := parentOf(ev)
	if !ok {
		return nil, nil
	}
	return wk.visible(rel.EventID, ev.RoomID)
}

// next returns the events one step from ev in the walk's direction that
// the viewer may see: its children, or its parent.
func (wk *walk) next(ev *rooms.Event) ([]*rooms.Event, error) {
	if wk.req.Direction == "down" {
		return wk.visibleChildren(ev)
	}
	parent, err := wk.parent(ev)
	if err != nil || parent == nil {
		return nil, err
	}
	return []*rooms.Event{parent}, nil
}

// visibleChildren returns the children of ev the viewer may see, in the
// request's order.
func (wk *walk) visibleChildren(ev *rooms.Event) ([]*rooms.Event, error) {
	kids, err := wk.s.children(wk.ctx, ev.ID, ev.RoomID, wk.recentFirst)
	if err != nil {
		return nil, err
	}
	var out []*rooms.Event
	for _, k := range kids {
		c, err := wk.visible(k.id, "")
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// summarize returns the children counts by rel_type and the children
// hash: the unpadded base64 SHA-256 of the sorted child event IDs.
func summarize(kids []child) (map[string]int, string) {
	counts := map[string]int{}
	ids := make([]string, 0, len(kids))
	for _, k := range kids {
		counts[k.relType]++
		ids = append(ids, string(k.id))
	}
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, "")))
	return counts, base64.RawStdEncoding.EncodeToString(sum[:])
}

// addChildren sets unsigned.children and unsigned.children_hash of an
// event.
func (s *Service) addChildren(ctx context.Context, ev *rooms.Event, unsigned map[string]any) error {
	kids, err := s.children(ctx, ev.ID, ev.RoomID, false)
	if err != nil {
		return err
	}
	unsigned["children"], unsigned["children_hash"] = summarize(kids)
	return nil
}
