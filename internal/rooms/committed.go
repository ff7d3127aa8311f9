package rooms

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"maunium.net/go/mautrix/id"
)

// committedSize is how many of the node's newest timeline events stay in
// memory for CommittedEvents: enough for every follower woken by a send
// to read what it missed without the database.
const committedSize = 1024

// committedPageSize is how many rows CommittedEvents reads from the
// database at a time, and committedPages how many pages one call reads at
// most while its filter picks fewer than the limit.
const (
	committedPageSize = 200
	committedPages    = 8
)

// EventFilter picks the committed events a reader wants. An event is
// picked when its type is one of Types or its room is one Rooms accepts;
// a filter with neither picks every event. Rooms is called with no lock
// of the engine held and must be quick.
type EventFilter struct {
	Types []string
	Rooms func(id.RoomID) bool
}

// picks reports whether the filter picks ev.
func (f EventFilter) picks(ev *Event) bool {
	if f.Types == nil && f.Rooms == nil {
		return true
	}
	return slices.Contains(f.Types, ev.Type) || (f.Rooms != nil && f.Rooms(ev.RoomID))
}

// pick appends to out the events of evs the filter picks, up to limit in
// all; full reports that it reached the limit.
func (f EventFilter) pick(out, evs []*Event, limit int) (_ []*Event, full bool) {
	for _, ev := range evs {
		if !f.picks(ev) {
			continue
		}
		out = append(out, ev)
		if len(out) == limit {
			return out, true
		}
	}
	return out, false
}

// CommittedEvents returns, in stream order, up to limit committed events
// of the timeline with after < pos <= upTo (upTo cut to the committed
// position) that f picks, and through, the position up to which it
// looked: every picked event up to through is in evs, and through < upTo
// means more may follow. Only the accepted timeline is read: rejected,
// soft-failed and outlier events live beside it (see the package doc),
// and backfilled history lies at negative positions, so followers
// reading from a mark at 0 or above never see them. The node's newest
// events are served from memory; older ones, and those a fresh engine
// has not seen commit, from the database.
func (e *Engine) CommittedEvents(ctx context.Context, after, upTo int64, f EventFilter, limit int) (evs []*Event, through int64, err error) {
	upTo = min(upTo, e.db.Visible())
	if limit <= 0 || after >= upTo {
		return nil, max(after, upTo), nil
	}
	if evs, through, ok := e.committed.get(after, upTo, f, limit); ok {
		return evs, through, nil
	}
	return e.committedFromDB(ctx, after, upTo, f, limit)
}

// committedFromDB reads CommittedEvents' answer from the events table, a
// page at a time, the type filter in the query when there is no rooms
// filter.
func (e *Engine) committedFromDB(ctx context.Context, after, upTo int64, f EventFilter, limit int) ([]*Event, int64, error) {
	where := "WHERE pos > $1 AND pos <= $2 AND rejected = FALSE"
	args := []any{0, upTo}
	if f.Rooms == nil && f.Types != nil {
		if len(f.Types) == 0 {
			return nil, upTo, nil
		}
		where += " AND type IN (" + placeholders(3, len(f.Types)) + ")"
		for _, t := range f.Types {
			args = append(args, t)
		}
	}
	where += fmt.Sprintf(" ORDER BY pos LIMIT %d", committedPageSize)
	var out []*Event
	from := after
	for range committedPages {
		args[0] = from
		page, err := e.queryEvents(ctx, where, args...)
		if err != nil {
			return nil, 0, fmt.Errorf("read committed events: %w", err)
		}
		var full bool
		out, full = f.pick(out, page, limit)
		if full {
			return out, out[len(out)-1].Pos, nil
		}
		if len(page) < committedPageSize {
			return out, upTo, nil
		}
		from = page[len(page)-1].Pos
	}
	return out, from, nil
}

// committedEvents is a ring of the node's newest timeline events in
// stream order, filled as their writes commit.
type committedEvents struct {
	mu     sync.Mutex
	events []*Event // oldest at start
	start  int
	// floor: every committed event with a position above it is here; -1
	// until the first event commits.
	floor int64
}

func newCommittedEvents() *committedEvents {
	return &committedEvents{events: make([]*Event, 0, committedSize), floor: -1}
}

// add appends an event that just committed. Writes commit in position
// order, so the ring stays sorted.
func (c *committedEvents) add(ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.floor < 0 {
		c.floor = ev.Pos - 1
	}
	if len(c.events) < cap(c.events) {
		c.events = append(c.events, ev)
		return
	}
	c.floor = c.events[c.start].Pos
	c.events[c.start] = ev
	c.start = (c.start + 1) % len(c.events)
}

// at returns the ring's i-th oldest event.
func (c *committedEvents) at(i int) *Event { return c.events[(c.start+i)%len(c.events)] }

// get answers CommittedEvents from memory; ok is false when events
// after after may have left the ring (or were never in it).
func (c *committedEvents) get(after, upTo int64, f EventFilter, limit int) (evs []*Event, through int64, ok bool) {
	c.mu.Lock()
	if c.floor < 0 || after < c.floor {
		c.mu.Unlock()
		return nil, 0, false
	}
	n := len(c.events)
	i := sort.Search(n, func(i int) bool { return c.at(i).Pos > after })
	var in []*Event
	for ; i < n && c.at(i).Pos <= upTo; i++ {
		in = append(in, c.at(i))
	}
	c.mu.Unlock()
	evs, full := f.pick(nil, in, limit)
	if full {
		return evs, evs[len(evs)-1].Pos, true
	}
	return evs, upTo, true
}

// replace swaps in a new version of an event (after a redaction).
func (c *committedEvents) replace(ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	replaceEvent(c.events, ev)
}

// dropRoom forgets a purged room's events: they are no longer in the
// events table either.
func (c *committedEvents) dropRoom(roomID id.RoomID) {
	c.drop(func(ev *Event) bool { return ev.RoomID == roomID })
}

// dropEvent forgets an event that has left the timeline (rejected once a
// partial-state room's full state is known).
func (c *committedEvents) dropEvent(evID id.EventID) {
	c.drop(func(ev *Event) bool { return ev.ID == evID })
}

// drop forgets the events gone picks.
func (c *committedEvents) drop(gone func(*Event) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.events)
	kept := make([]*Event, 0, cap(c.events))
	for i := range n {
		if ev := c.at(i); !gone(ev) {
			kept = append(kept, ev)
		}
	}
	c.events, c.start = kept, 0
}
