package rooms

import (
	"context"
	"slices"
	"sync"

	"maunium.net/go/mautrix/id"
)

// recentSize is how many of a room's newest events stay in memory, enough
// for a sync's default timeline and for the incremental syncs that follow
// each message.
const recentSize = 24

// recentEvents is a room's newest events in stream order, filled by the
// database writer as their writes commit, so it is complete for every position
// above floor. Readers must ignore events above the committed position.
type recentEvents struct {
	mu     sync.Mutex
	events []*Event
	// floor: every event of the room with a position above it is here.
	floor int64
}

// add appends a committed event (positions only grow).
func (re *recentEvents) add(ev *Event) {
	re.mu.Lock()
	defer re.mu.Unlock()
	if len(re.events) == recentSize {
		re.floor = re.events[0].Pos
		copy(re.events, re.events[1:])
		re.events = re.events[:recentSize-1]
	}
	re.events = append(re.events, ev)
}

// find returns the in-memory copy of an event, or nil.
func (re *recentEvents) find(evID id.EventID) *Event {
	re.mu.Lock()
	defer re.mu.Unlock()
	for _, ev := range re.events {
		if ev.ID == evID {
			return ev
		}
	}
	return nil
}

// drop forgets an event that has left the timeline (rejected once a
// partial-state room's full state is known).
func (re *recentEvents) drop(evID id.EventID) {
	re.mu.Lock()
	defer re.mu.Unlock()
	re.events = slices.DeleteFunc(re.events, func(ev *Event) bool { return ev.ID == evID })
}

// replace swaps in a new version of a stored event (after a redaction).
func (re *recentEvents) replace(ev *Event) {
	re.mu.Lock()
	defer re.mu.Unlock()
	replaceEvent(re.events, ev)
}

// replaceEvent swaps ev in for the event of the same ID in evs.
func replaceEvent(evs []*Event, ev *Event) {
	for i, old := range evs {
		if old.ID == ev.ID {
			evs[i] = ev
		}
	}
}

// get returns up to limit events with from < pos <= to, newest first when
// backwards, oldest first otherwise; ok is false when memory cannot answer
// for certain.
func (re *recentEvents) get(from, to int64, limit int, backwards bool) (out []*Event, ok bool) {
	re.mu.Lock()
	defer re.mu.Unlock()
	var in []*Event
	for _, ev := range re.events {
		if ev.Pos > from && ev.Pos <= to {
			in = append(in, ev)
		}
	}
	if from < re.floor {
		// Older events may exist below the floor: memory is enough only
		// for the newest limit events going backwards.
		if !backwards || len(in) < limit {
			return nil, false
		}
	}
	if backwards {
		slices.Reverse(in)
	}
	if len(in) > limit {
		in = in[:limit]
	}
	return in, true
}

// recentEvents answers RoomEvents from memory when it can.
func (e *Engine) recentEvents(ctx context.Context, r *room, from, to int64, limit int, backwards bool) ([]*Event, bool) {
	if limit <= 0 {
		return nil, false
	}
	// Only committed positions may be served.
	to = min(to, e.db.Visible())
	return r.recent.get(from, to, limit, backwards)
}
