package rooms

import (
	"context"
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"
)

// Walks of the DAG for other servers: /backfill and /get_missing_events
// follow prev_events back through the room's timeline, and each event they
// return is filtered by ServerMaySee by the caller.

// maxWalk bounds the events a walk returns, whatever limit is asked.
const maxWalk = 100

// Backfill returns up to limit events of the room reached by walking
// prev_events back from the events of from (which are included), newest
// (deepest) first.
func (e *Engine) Backfill(ctx context.Context, roomID id.RoomID, from []id.EventID, limit int) ([]*Event, error) {
	if _, err := e.room(ctx, roomID); err != nil {
		return nil, err
	}
	limit = min(max(limit, 0), maxWalk)
	start, err := e.roomTimelineEvents(ctx, roomID, from)
	if err != nil {
		return nil, err
	}
	seen := map[id.EventID]bool{}
	queue := start
	var out []*Event
	for len(queue) > 0 && len(out) < limit {
		// Take the deepest event waiting, so the walk goes back evenly
		// along every branch.
		slices.SortFunc(queue, func(a, b *Event) int { return int(b.Depth - a.Depth) })
		ev := queue[0]
		queue = queue[1:]
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		out = append(out, ev)
		prevs, err := e.roomTimelineEvents(ctx, roomID, ev.PDU.PrevEvents)
		if err != nil {
			return nil, err
		}
		for _, p := range prevs {
			if !seen[p.ID] {
				queue = append(queue, p)
			}
		}
	}
	return out, nil
}

// MissingEvents answers /get_missing_events: up to limit events of the
// room reached by walking prev_events back from latest (which are not
// included), not going past earliest nor below minDepth, oldest first.
func (e *Engine) MissingEvents(ctx context.Context, roomID id.RoomID, earliest, latest []id.EventID, limit int, minDepth int64) ([]*Event, error) {
	if _, err := e.room(ctx, roomID); err != nil {
		return nil, err
	}
	limit = min(max(limit, 0), maxWalk)
	stop := map[id.EventID]bool{}
	for _, eid := range earliest {
		stop[eid] = true
	}
	seen := map[id.EventID]bool{}
	for _, eid := range latest {
		seen[eid] = true
	}
	start, err := e.roomTimelineEvents(ctx, roomID, latest)
	if err != nil {
		return nil, err
	}
	var next []id.EventID
	for _, ev := range start {
		next = append(next, ev.PDU.PrevEvents...)
	}
	var out []*Event
	for len(next) > 0 && len(out) < limit {
		var load []id.EventID
		for _, eid := range next {
			if !seen[eid] && !stop[eid] {
				seen[eid] = true
				load = append(load, eid)
			}
		}
		evs, err := e.roomTimelineEvents(ctx, roomID, load)
		if err != nil {
			return nil, err
		}
		// Nearest first, so the limit keeps the events closest to latest.
		slices.SortFunc(evs, func(a, b *Event) int { return int(b.Depth - a.Depth) })
		next = next[:0]
		for _, ev := range evs {
			if ev.Depth < minDepth || len(out) >= limit {
				continue
			}
			out = append(out, ev)
			next = append(next, ev.PDU.PrevEvents...)
		}
	}
	sortByDepth(out)
	return out, nil
}

// roomTimelineEvents loads the events of the room's timeline among ids.
func (e *Engine) roomTimelineEvents(ctx context.Context, roomID id.RoomID, ids []id.EventID) ([]*Event, error) {
	evs, err := e.timelineEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(evs, func(ev *Event) bool { return ev.RoomID != roomID }), nil
}

// ServerMaySee applies history visibility for another server: it may see
// an event that any of its users could see. With the history visibility
// in force before the event: world_readable and shared show it to a
// server with a user joined then or now (shared history is visible to
// later joiners; world_readable to anyone, a server with no user
// included), invited to one with a user joined or invited then, joined to
// one with a user joined then.
func (e *Engine) ServerMaySee(ctx context.Context, server string, ev *Event) (bool, error) {
	if ev.Rejected || ev.SoftFailed {
		return false, nil
	}
	state, _, err := e.snapshotState(ctx, ev.SnapshotBefore)
	if err != nil {
		return false, err
	}
	hv := "shared"
	if hvID := state[stateKey{"m.room.history_visibility", ""}]; hvID != "" {
		if hvEv, err := e.Event(ctx, hvID); err == nil {
			var c struct {
				HistoryVisibility string `json:"history_visibility"`
			}
			if json.Unmarshal(hvEv.PDU.Content, &c) == nil && c.HistoryVisibility != "" {
				hv = c.HistoryVisibility
			}
		}
	}
	if hv == "world_readable" {
		return true, nil
	}
	memberships, err := e.serverMemberships(ctx, server, state)
	if err != nil {
		return false, err
	}
	// A member event of the server's own user counts with its new
	// membership (a server sees its user's join).
	if ev.Type == "m.room.member" && ev.StateKey != nil && id.UserID(*ev.StateKey).Homeserver() == server {
		memberships = append(memberships, ev.Membership())
	}
	switch hv {
	case "joined":
		return slices.Contains(memberships, "join"), nil
	case "invited":
		return slices.Contains(memberships, "join") || slices.Contains(memberships, "invite"), nil
	default: // shared, and unknown values as shared
		if slices.Contains(memberships, "join") || slices.Contains(memberships, "invite") {
			return true, nil
		}
		for u, m := range e.Members(ctx, ev.RoomID) {
			if m == "join" && u.Homeserver() == server {
				return true, nil
			}
		}
		return false, nil
	}
}

// serverMemberships lists the memberships of the server's users in state.
func (e *Engine) serverMemberships(ctx context.Context, server string, state idState) ([]string, error) {
	var ids []id.EventID
	for k, eid := range state {
		if k.Type == "m.room.member" && id.UserID(k.StateKey).Homeserver() == server {
			ids = append(ids, eid)
		}
	}
	evs, err := e.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Membership())
	}
	return out, nil
}
