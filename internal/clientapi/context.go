package clientapi

import (
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

const defaultContextLimit = 10

// getContext serves GET /rooms/{roomId}/context/{eventId}: the events
// around one event, the state at the last of them, and /messages tokens to
// paginate on either side.
func (s *Service) getContext(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, upTo, err := s.visibleRoom(r, sess)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	ev, visible, vis, err := s.eventParam(r, sess, roomID, upTo)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	limit, err := queryLimit(q, defaultContextLimit, maxMessagesLimit)
	if err != nil {
		return nil, err
	}
	filter, err := queryFilter(q)
	if err != nil {
		return nil, err
	}
	nBefore := limit / 2
	nAfter := limit - nBefore
	var before, after []*rooms.Event
	// The events around ev in the room's topological order, history
	// missing before it fetched from other servers as /messages does.
	at := rooms.PointOf(ev)
	if nBefore > 0 {
		if before, err = s.rooms.HistoryBefore(ctx, roomID, at, rooms.TopoStart, visible, nBefore); err != nil {
			return nil, err
		}
	}
	if nAfter > 0 {
		if after, err = s.rooms.TopoEvents(ctx, roomID, at, rooms.TopoEnd, visible, nAfter, false); err != nil {
			return nil, err
		}
	}
	// The tokens cover every event read, also those the filter drops.
	first, last := ev, ev
	if len(before) > 0 {
		first = before[len(before)-1]
	}
	if len(after) > 0 {
		last = after[len(after)-1]
	}
	keep := func(evs []*rooms.Event) []*rooms.Event {
		out := make([]*rooms.Event, 0, len(evs))
		for _, e := range evs {
			if filter.AllowsEvent(e) {
				out = append(out, e)
			}
		}
		return out
	}
	before, after = keep(vis.FilterVisible(before)), keep(vis.FilterVisible(after))
	all := append(append([]*rooms.Event{ev}, before...), after...)
	aggs, err := s.aggregations(ctx, sess, visible, all)
	if err != nil {
		return nil, err
	}
	renderAll := func(evs []*rooms.Event) []any {
		out := make([]any, 0, len(evs))
		for _, e := range evs {
			out = append(out, aggs.Add(s.clientAt(e, sess, vis)))
		}
		return out
	}
	state, err := s.rooms.StateAfter(ctx, last)
	if err != nil {
		return nil, err
	}
	senders := map[id.UserID]bool{sess.UserID: true}
	for _, e := range all {
		senders[e.Sender] = true
	}
	lazy := filter != nil && filter.LazyLoadMembers
	stateOut := []any{}
	for _, st := range state {
		if lazy && st.Type == "m.room.member" && !senders[id.UserID(*st.StateKey)] {
			continue
		}
		if filter != nil && !filter.Allows(st.Type, st.Sender) {
			continue
		}
		stateOut = append(stateOut, s.client(st, sess))
	}
	return map[string]any{
		"start":         rooms.PointOf(first).String(),
		"end":           rooms.PointOf(last).String(),
		"event":         aggs.Add(s.clientAt(ev, sess, vis)),
		"events_before": renderAll(before),
		"events_after":  renderAll(after),
		"state":         stateOut,
	}, nil
}

// getTimestampToEvent serves GET /rooms/{roomId}/timestamp_to_event.
func (s *Service) getTimestampToEvent(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if q.Get("ts") == "" {
		return nil, mxhttp.MissingParam("missing ts")
	}
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil || ts < 0 {
		return nil, mxhttp.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := q.Get("dir")
	switch dir {
	case "f", "b":
	case "":
		return nil, mxhttp.MissingParam("missing dir")
	default:
		return nil, mxhttp.InvalidParam("dir must be f or b")
	}
	ctx := r.Context()
	upTo, err := s.requireVisible(ctx, sess.UserID, roomID)
	if err != nil {
		return nil, err
	}
	ev, err := s.rooms.EventNearTS(ctx, roomID, ts, dir == "f", min(upTo, s.db.Visible()))
	if err != nil {
		return nil, err
	}
	if ev != nil {
		vis, err := s.rooms.Visibility(ctx, roomID, sess.UserID)
		if err != nil {
			return nil, err
		}
		if !vis.CanSee(ev) {
			ev = nil
		}
	}
	if ev == nil {
		direction := "forward"
		if dir == "b" {
			direction = "backward"
		}
		return nil, mxhttp.NotFound("no event found from %d in the %s direction", ts, direction)
	}
	return map[string]any{"event_id": ev.ID, "origin_server_ts": ev.TS}, nil
}
