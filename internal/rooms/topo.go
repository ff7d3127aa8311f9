package rooms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// A room's events have two orders. Stream order (positions) is the order
// in which this node stored them; /sync follows it forwards, so that
// nothing stored is missed. Topological order, (depth, position), is the
// order of the room's history; /messages and /context page in it, so that
// events learnt late (a gap filled, history backfilled) appear where they
// belong. Backfilled events take negative positions (see backfill.go), so
// /sync never delivers them as new.

// TopoPoint is a point in a room's topological order: an event's depth and
// position. Pages run strictly before or after it.
type TopoPoint struct {
	Depth int64
	Pos   int64
}

// TopoEnd is the point after every event.
var TopoEnd = TopoPoint{Depth: math.MaxInt64, Pos: math.MaxInt64}

// TopoStart is the point before every event.
var TopoStart = TopoPoint{Depth: math.MinInt64, Pos: math.MinInt64}

// PointOf returns the event's point in its room's topological order.
func PointOf(ev *Event) TopoPoint { return TopoPoint{Depth: ev.Depth, Pos: ev.Pos} }

// Before reports whether p comes before q.
func (p TopoPoint) Before(q TopoPoint) bool {
	return p.Depth < q.Depth || (p.Depth == q.Depth && p.Pos < q.Pos)
}

// String returns the point as a pagination token, "t<depth>_<pos>".
func (p TopoPoint) String() string { return fmt.Sprintf("t%d_%d", p.Depth, p.Pos) }

// ParseTopoPoint reads a token made by TopoPoint.String; ok is false for a
// string of another form.
func ParseTopoPoint(s string) (p TopoPoint, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, "t")
	if !ok {
		return TopoPoint{}, false, nil
	}
	d, ps, found := strings.Cut(rest, "_")
	if !found {
		return TopoPoint{}, true, fmt.Errorf("bad token %q", s)
	}
	if p.Depth, err = strconv.ParseInt(d, 10, 64); err != nil {
		return TopoPoint{}, true, fmt.Errorf("bad token %q", s)
	}
	if p.Pos, err = strconv.ParseInt(ps, 10, 64); err != nil {
		return TopoPoint{}, true, fmt.Errorf("bad token %q", s)
	}
	return p, true, nil
}

// TopoEvents returns up to limit events of the room strictly between from
// and to in topological order, with a position at most upTo: the newest
// first when backwards (from is the later point), the oldest first
// otherwise.
func (e *Engine) TopoEvents(ctx context.Context, roomID id.RoomID, from, to TopoPoint, upTo int64, limit int, backwards bool) ([]*Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	upTo = min(upTo, e.db.Visible())
	lo, hi, order := to, from, "DESC"
	if !backwards {
		lo, hi, order = from, to, "ASC"
	}
	return e.queryEvents(ctx, topoWhere+` ORDER BY depth `+order+`, pos `+order+` LIMIT $7`,
		roomID, lo.Depth, lo.Pos, hi.Depth, hi.Pos, upTo, limit)
}

// topoWhere selects a room's events between two topological points, a
// range of the events_room_topo index.
const topoWhere = `WHERE room_id = $1 AND (depth, pos) > ($2, $3) AND (depth, pos) < ($4, $5) AND pos <= $6`

// PointAfterPos converts a stream position into the topological point
// just before the room's first event stored after it (TopoEnd when there
// is none), and returns that event: a page backwards from a /sync
// prev_batch starts there.
func (e *Engine) PointAfterPos(ctx context.Context, roomID id.RoomID, pos int64) (TopoPoint, *Event, error) {
	evs, err := e.queryEvents(ctx, "WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos LIMIT 1", roomID, pos, e.db.Visible())
	if err != nil || len(evs) == 0 {
		return TopoEnd, nil, err
	}
	return PointOf(evs[0]), evs[0], nil
}

// PointAtOrBeforePos converts a stream position into the topological point
// of the room's last event stored at or before it (TopoStart when there is
// none): a page forwards from a stream token starts after it.
func (e *Engine) PointAtOrBeforePos(ctx context.Context, roomID id.RoomID, pos int64) (TopoPoint, error) {
	var p TopoPoint
	err := e.db.QueryRow(ctx, "SELECT depth, pos FROM events WHERE room_id = $1 AND pos <= $2 ORDER BY pos DESC LIMIT 1", roomID, pos).
		Scan(&p.Depth, &p.Pos)
	if errors.Is(err, sql.ErrNoRows) {
		return TopoStart, nil
	}
	if err != nil {
		return TopoStart, fmt.Errorf("event at position %d: %w", pos, err)
	}
	return p, nil
}
