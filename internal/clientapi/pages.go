package clientapi

import (
	"context"
	"net/url"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/sync"
)

// pageToken is a pagination token of /messages: a stream position
// ("s<pos>_<eph>", what /sync hands out as prev_batch and next_batch) or
// a point in the room's topological order ("t<depth>_<pos>", what
// /messages and /context hand out), which places history learnt late
// (backfilled, or filling a gap) where it belongs.
type pageToken struct {
	pos   int64
	point rooms.TopoPoint
	topo  bool
}

// parsePageToken reads either form.
func parsePageToken(v string) (pageToken, error) {
	if p, ok, err := rooms.ParseTopoPoint(v); ok {
		return pageToken{point: p, topo: true}, err
	}
	tok, err := sync.ParseToken(v)
	return pageToken{pos: tok.Pos}, err
}

// queryPageToken reads a token parameter; ok is false when it is absent.
func queryPageToken(q url.Values, name string) (tok pageToken, ok bool, err error) {
	v := q.Get(name)
	if v == "" {
		return pageToken{}, false, nil
	}
	if tok, err = parsePageToken(v); err != nil {
		return pageToken{}, false, mxhttp.InvalidParam("invalid %s token", name)
	}
	return tok, true, nil
}

// streamPos is the stream position a token stands for, for the endpoints
// that read the room as of a position (/members?at): a topological
// point's own position, and 0 for backfilled history (whose state is not
// known here).
func (t pageToken) streamPos() int64 {
	if t.topo {
		return max(t.point.Pos, 0)
	}
	return t.pos
}

// page is what readPage read, and how its tokens are written.
type page struct {
	events []*rooms.Event
	start  string
	// topo is set when the page was read in topological order.
	topo bool
	back bool
}

// end returns the token past the page's last event read.
func (p page) end(last *rooms.Event) string {
	switch {
	case p.topo:
		return rooms.PointOf(last).String()
	case p.back:
		return sync.Token{Pos: last.Pos - 1}.String()
	}
	return sync.Token{Pos: last.Pos}.String()
}

// readPage reads one page of /messages. Going backwards it reads in
// topological order, from the point a topological token names or among
// the events stored up to a stream token, and backfills history missing
// inside the page from other servers; going
// forwards it reads in topological order from a topological token, and in
// stream order (as /sync does) from a stream token or none.
func (s *Service) readPage(ctx context.Context, roomID id.RoomID, back bool, from pageToken, hasFrom bool, to pageToken, hasTo bool, visible int64, limit int) (page, error) {
	if !back && !from.topo {
		lo, hi := from.pos, visible
		if hasTo {
			hi = min(hi, to.streamPos())
		}
		evs, err := s.rooms.RoomEvents(ctx, roomID, lo, hi, limit, false)
		return page{events: evs, start: sync.Token{Pos: lo}.String()}, err
	}
	out := page{topo: true, back: back}
	start := rooms.TopoEnd
	switch {
	case from.topo:
		start = from.point
		out.start = from.point.String()
	case hasFrom:
		// Only backwards (forwards from a stream token reads in stream
		// order, above): HistoryBeforePos reads from it.
		out.start = sync.Token{Pos: from.pos}.String()
	default:
		out.start = sync.Token{Pos: visible}.String()
	}
	var stop rooms.TopoPoint
	var err error
	switch {
	case to.topo:
		stop = to.point
	case hasTo && back:
		stop, err = s.rooms.PointAtOrBeforePos(ctx, roomID, to.pos)
	case hasTo:
		stop, _, err = s.rooms.PointAfterPos(ctx, roomID, to.pos)
	case back:
		stop = rooms.TopoStart
	default:
		stop = rooms.TopoEnd
	}
	if err != nil {
		return out, err
	}
	switch {
	case back && hasFrom && !from.topo:
		// The events stored up to a /sync prev_batch, in topological
		// order: an event from another server stored after them but
		// before some of them in that order was in /sync already.
		out.events, err = s.rooms.HistoryBeforePos(ctx, roomID, from.pos, stop, visible, limit)
	case back:
		out.events, err = s.rooms.HistoryBefore(ctx, roomID, start, stop, visible, limit)
	default:
		out.events, err = s.rooms.TopoEvents(ctx, roomID, start, stop, visible, limit, false)
	}
	return out, err
}
