package clientapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/sync"
)

// Pagination limits of the relations and threads endpoints.
const (
	defaultRelationsLimit = 50
	defaultThreadsLimit   = 20
	maxThreadsLimit       = 100
	// recurseDepth is how many relation hops recurse=true follows.
	recurseDepth = 3
)

// aggregations computes the bundled aggregations of events served to the
// session; upTo is the highest position the user may see.
func (s *Service) aggregations(ctx context.Context, sess *accounts.Session, upTo int64, evs []*rooms.Event) (rooms.Aggregations, error) {
	return s.rooms.Aggregate(ctx, evs, rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID}, upTo)
}

// render turns events into the client format with bundled aggregations.
func (s *Service) render(ctx context.Context, sess *accounts.Session, upTo int64, evs []*rooms.Event) ([]any, error) {
	aggs, err := s.aggregations(ctx, sess, upTo, evs)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(evs))
	for _, ev := range evs {
		out = append(out, aggs.Add(s.client(ev, sess)))
	}
	return out, nil
}

// queryLimit reads the limit parameter: def when absent, at most max.
func queryLimit(q url.Values, def, max int) (int, error) {
	l := q.Get("limit")
	if l == "" {
		return def, nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 0 {
		return 0, mxhttp.InvalidParam("invalid limit")
	}
	return min(n, max), nil
}

// queryFilter reads the filter parameter, a RoomEventFilter as JSON; it
// is nil when absent.
func queryFilter(q url.Values) (*sync.RoomEventFilter, error) {
	f := q.Get("filter")
	if f == "" {
		return nil, nil
	}
	filter := &sync.RoomEventFilter{}
	if err := mxhttp.Unmarshal([]byte(f), filter); err != nil {
		return nil, mxhttp.InvalidParam("invalid filter")
	}
	return filter, nil
}

// queryToken reads a pagination token parameter; ok is false when absent.
func queryToken(q url.Values, name string) (pos int64, ok bool, err error) {
	v := q.Get(name)
	if v == "" {
		return 0, false, nil
	}
	tok, err := parsePageToken(v)
	if err != nil {
		return 0, false, mxhttp.InvalidParam("invalid %s token", name)
	}
	return tok.streamPos(), true, nil
}

// visibleEvent loads an event of the room the user may see (up to upTo,
// and under the history visibility rules), or answers M_NOT_FOUND.
func (s *Service) visibleEvent(ctx context.Context, roomID id.RoomID, evID id.EventID, upTo int64, vis *rooms.Visibility) (*rooms.Event, error) {
	ev, err := s.rooms.Event(ctx, evID)
	if err != nil {
		if me, ok := mxhttp.AsError(err); ok && me.Code == "M_NOT_FOUND" {
			return nil, mxhttp.NotFound("event not found")
		}
		return nil, err
	}
	if ev.RoomID != roomID || ev.Pos > upTo || ev.Rejected || !vis.CanSee(ev) {
		return nil, mxhttp.NotFound("event not found")
	}
	return ev, nil
}

// eventParam loads the event named in the path, which the user must be able
// to see (as visibleEvent checks), with the highest position the user sees
// now and the room's history visibility for them.
func (s *Service) eventParam(r *http.Request, sess *accounts.Session, roomID id.RoomID, upTo int64) (ev *rooms.Event, visible int64, vis *rooms.Visibility, err error) {
	ctx := r.Context()
	visible = min(upTo, s.db.Visible())
	if vis, err = s.rooms.Visibility(ctx, roomID, sess.UserID); err != nil {
		return nil, 0, nil, err
	}
	if ev, err = s.visibleEvent(ctx, roomID, id.EventID(r.PathValue("eventId")), visible, vis); err != nil {
		return nil, 0, nil, err
	}
	return ev, visible, vis, nil
}

func (s *Service) getRelations(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.eventRoom(r, sess)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	parent, visible, vis, err := s.eventParam(r, sess, roomID, upTo)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	backwards := true
	switch q.Get("dir") {
	case "", "b":
	case "f":
		backwards = false
	default:
		return nil, mxhttp.InvalidParam("dir must be b or f")
	}
	limit, err := queryLimit(q, defaultRelationsLimit, maxMessagesLimit)
	if err != nil {
		return nil, err
	}
	depth := 1
	recurse := q.Get("recurse")
	switch recurse {
	case "", "false":
	case "true":
		depth = recurseDepth
	default:
		return nil, mxhttp.InvalidParam("recurse must be true or false")
	}
	from, hasFrom, err := queryToken(q, "from")
	if err != nil {
		return nil, err
	}
	to, hasTo, err := queryToken(q, "to")
	if err != nil {
		return nil, err
	}
	rq := rooms.RelationsQuery{
		RoomID: roomID, EventID: parent.ID, RelType: r.PathValue("relType"), EventType: r.PathValue("eventType"),
		Backwards: backwards, Limit: limit, Depth: depth,
	}
	if backwards {
		rq.From, rq.To = visible, 0
		if hasFrom {
			rq.From = min(from, visible)
		}
		if hasTo {
			rq.To = to
		}
	} else {
		rq.From, rq.To = 0, visible
		if hasFrom {
			rq.From = from
		}
		if hasTo {
			rq.To = min(to, visible)
		}
	}
	var evs []*rooms.Event
	if limit > 0 {
		if evs, err = s.rooms.Relations(ctx, rq); err != nil {
			return nil, err
		}
	}
	chunk, err := s.render(ctx, sess, visible, vis.FilterVisible(evs))
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"chunk": chunk}
	if len(evs) == limit && limit > 0 {
		last := evs[len(evs)-1]
		next := last.Pos
		if backwards {
			next--
		}
		resp["next_batch"] = sync.Token{Pos: next}.String()
	}
	if hasFrom {
		resp["prev_batch"] = q.Get("from")
	}
	if recurse != "" {
		resp["recursion_depth"] = depth
	}
	return resp, nil
}

func (s *Service) getThreads(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.visibleRoom(r, sess)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	q := r.URL.Query()
	tq := rooms.ThreadsQuery{RoomID: roomID}
	switch q.Get("include") {
	case "", "all":
	case "participated":
		tq.Participant = sess.UserID
	default:
		return nil, mxhttp.InvalidParam("include must be all or participated")
	}
	if tq.Limit, err = queryLimit(q, defaultThreadsLimit, maxThreadsLimit); err != nil {
		return nil, err
	}
	if tq.Limit == 0 {
		return nil, mxhttp.InvalidParam("limit must be greater than zero")
	}
	tq.UpTo = min(upTo, s.db.Visible())
	tq.Before = tq.UpTo
	from, hasFrom, err := queryToken(q, "from")
	if err != nil {
		return nil, err
	}
	if hasFrom {
		tq.Before = min(from, tq.UpTo)
	}
	threads, err := s.rooms.Threads(ctx, tq)
	if err != nil {
		return nil, err
	}
	ids := make([]id.EventID, len(threads))
	for i, t := range threads {
		ids[i] = t.Root
	}
	loaded, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*rooms.Event, len(loaded))
	for _, ev := range loaded {
		byID[ev.ID] = ev
	}
	vis, err := s.rooms.Visibility(ctx, roomID, sess.UserID)
	if err != nil {
		return nil, err
	}
	roots := make([]*rooms.Event, 0, len(threads))
	for _, t := range threads {
		if ev := byID[t.Root]; ev != nil && ev.RoomID == roomID && ev.Pos <= tq.UpTo && vis.CanSee(ev) {
			roots = append(roots, ev)
		}
	}
	chunk, err := s.render(ctx, sess, tq.UpTo, roots)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"chunk": chunk}
	if len(threads) == tq.Limit {
		resp["next_batch"] = sync.Token{Pos: threads[len(threads)-1].Latest - 1}.String()
	}
	return resp, nil
}
