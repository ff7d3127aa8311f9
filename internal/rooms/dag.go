package rooms

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/stateres"
	"github.com/matrixos/matrixos/internal/storage"
)

// A room is a DAG: an event may have several prev_events and the room
// several forward extremities. The state before an event is the state
// after its one prev_event, or the resolution (stateres) of the states
// after each; the room's current state is the resolution of the states
// after each forward extremity. Local events are built on the current
// state and reference every extremity, so for them the state before is the
// current state and nothing is resolved: the local send path stays a
// straight line. The types and functions here serve the other events
// (remote ones, a joined room's first event).

// idState maps each state key to the ID of the event that holds it.
type idState = map[stateKey]id.EventID

// dagFacts is what the write of an event not built on the pipeline's head
// needs besides the event.
type dagFacts struct {
	// before is the state before the event; beforeSnap is the committed
	// snapshot holding it, or 0 when the write must store one (a resolved
	// state), as a delta on beforeBase where that is cheap.
	before     idState
	beforeSnap int64
	beforeBase int64
	// current is the room's current state after the event; changed says
	// whether it differs from the state before the event was accepted, and
	// evIsCurrent whether it is the state right after the event.
	current        idState
	currentChanged bool
	evIsCurrent    bool
	// changedMembers are the users whose member event in the current state
	// the event changed.
	changedMembers []id.UserID
	// follows are the events the event comes after in the DAG: its
	// prev_events, with a rejected one replaced by those it follows
	// (statePrevs); nil when the state before was given.
	follows []id.EventID
	// outliers are stored beside the timeline before the event (a joined
	// room's state and auth chain).
	outliers []*Event
	// skipRedaction is set for a redaction whose sender may not redact
	// its (known) target: the event is kept, the target left alone.
	skipRedaction bool
	// newRoom is set when the event is the first of a room this node has
	// just joined: the room's row is inserted first.
	newRoom *Event
	// partial marks a room joined with partial state (written with the
	// join).
	partial *partialJoin
}

// afterSnapshot returns the snapshot holding the state right after ev, an
// event of the timeline: its own for a state event (whose snapshot ID is
// its position), the one before it otherwise.
func afterSnapshot(ev *Event) int64 {
	if ev.IsState() {
		return ev.Pos
	}
	return ev.SnapshotBefore
}

// stateAfterEvents returns the state after each event (of the timeline,
// committed), and the distinct snapshots holding them.
func (e *Engine) stateAfterEvents(ctx context.Context, evs []*Event) ([]idState, []int64, error) {
	var states []idState
	var snaps []int64
	for _, ev := range evs {
		snap := afterSnapshot(ev)
		if slices.Contains(snaps, snap) {
			continue
		}
		st, _, err := e.snapshotState(ctx, snap)
		if err != nil {
			return nil, nil, fmt.Errorf("state after %s: %w", ev.ID, err)
		}
		states, snaps = append(states, st), append(snaps, snap)
	}
	return states, snaps, nil
}

// resolve merges states of room r with state resolution; known holds
// events not stored yet. The auth chains are walked through the room's
// auth graph, which remembers them for the next resolution (in room
// versions whose event IDs are hashes: an ID then names one event).
func (e *Engine) resolve(ctx context.Context, r *room, states []idState, known map[id.EventID]*Event) (idState, error) {
	switch len(states) {
	case 0:
		return idState{}, nil
	case 1:
		return states[0], nil
	}
	in := make([]stateres.StateMap, len(states))
	for i, st := range states {
		m := make(stateres.StateMap, len(st))
		for k, v := range st {
			m[pdu.StateKey(k)] = v
		}
		in[i] = m
	}
	loader := engineEvents{e, known}
	res := stateres.Resolver{Events: loader, GetKey: e.keyFunc(ctx)}
	if !usesV1Format(r.version) {
		g, err := e.authGraph(ctx, r.id)
		if err != nil {
			return nil, err
		}
		res.Index = g.Index(loader)
		defer e.saveLoadedAuthEdges(r.id, g)
	}
	out, err := res.Resolve(ctx, r.version, in)
	if err != nil {
		return nil, fmt.Errorf("resolve state: %w", err)
	}
	resolved := make(idState, len(out))
	for k, v := range out {
		resolved[stateKey(k)] = v
	}
	return resolved, nil
}

// engineEvents is the engine as a stateres.EventLoader: events of the
// timeline and beside it, rejected ones flagged, and those of known (not
// stored yet).
type engineEvents struct {
	e     *Engine
	known map[id.EventID]*Event
}

func (l engineEvents) LoadEvents(ctx context.Context, ids []id.EventID) ([]*pdu.PDU, error) {
	return l.e.authEventLoader(ctx, l.known)(ids)
}

// withState adds ev, a state event, to st.
func withState(st idState, ev *Event) idState {
	if !ev.IsState() {
		return st
	}
	out := maps.Clone(st)
	if out == nil {
		out = idState{}
	}
	out[stateKey{ev.Type, *ev.StateKey}] = ev.ID
	return out
}

// sameState reports whether the states hold the same events.
func sameState(a, b idState) bool { return maps.Equal(a, b) }

// idsOf returns the state IDs of a roomState.
func idsOf(s *roomState) idState {
	out := make(idState, len(s.state))
	for k, ev := range s.state {
		out[k] = ev.ID
	}
	return out
}

// stateFrom returns the roomState holding target, built from base (which
// it shares when nothing changed) with the events that differ loaded from
// known or the database.
func (e *Engine) stateFrom(ctx context.Context, base *roomState, target idState, known map[id.EventID]*Event, ext []id.EventID, depth int64) (*roomState, error) {
	var load []id.EventID
	changed := 0
	for k, eid := range target {
		if cur := base.state[k]; cur == nil || cur.ID != eid {
			changed++
			if known[eid] == nil {
				load = append(load, eid)
			}
		}
	}
	removed := false
	for k := range base.state {
		if _, ok := target[k]; !ok {
			removed = true
			break
		}
	}
	if changed == 0 && !removed {
		return &roomState{state: base.state, byID: base.byID, members: base.members, membership: base.membership, servers: base.servers, extremities: ext, depth: depth}, nil
	}
	loaded, err := e.Events(ctx, load)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*Event, len(loaded)+len(known))
	maps.Copy(byID, known)
	for _, ev := range loaded {
		byID[ev.ID] = ev
	}
	if removed || changed > len(target)/2 {
		evs := make([]*Event, 0, len(target))
		for k, eid := range target {
			if cur := base.state[k]; cur != nil && cur.ID == eid {
				evs = append(evs, cur)
			} else if ev := byID[eid]; ev != nil {
				evs = append(evs, ev)
			} else {
				return nil, fmt.Errorf("state event %s not found", eid)
			}
		}
		return stateOf(evs, ext, depth), nil
	}
	next := &roomState{state: maps.Clone(base.state), byID: maps.Clone(base.byID), members: base.members, membership: base.membership, servers: base.servers, extremities: ext, depth: depth}
	for k, eid := range target {
		if cur := base.state[k]; cur != nil && cur.ID == eid {
			continue
		}
		ev := byID[eid]
		if ev == nil {
			return nil, fmt.Errorf("state event %s not found", eid)
		}
		next.set(ev)
	}
	return next, nil
}

// changedMemberKeys lists the users whose member event differs between
// two states, those left without one (a resolution may drop a key)
// included.
func changedMemberKeys(old *roomState, cur idState) []id.UserID {
	var out []id.UserID
	for k, eid := range cur {
		if k.Type != "m.room.member" {
			continue
		}
		if ev := old.state[k]; ev == nil || ev.ID != eid {
			out = append(out, id.UserID(k.StateKey))
		}
	}
	for u := range old.members {
		if _, ok := cur[stateKey{"m.room.member", string(u)}]; !ok {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// persistRemote writes an event not built on the pipeline's head, with
// the snapshots its state before and the room's new current state need.
func (e *Engine) persistRemote(ctx context.Context, tx *storage.Tx, r *room, a accepted) error {
	d, ev := a.dag, a.ev
	if d.newRoom != nil {
		if _, err := tx.Exec(ctx, "INSERT INTO rooms (room_id, version, creator, created_ts) VALUES ($1, $2, $3, $4)",
			r.id, string(r.version), d.newRoom.Sender, d.newRoom.TS); err != nil {
			return fmt.Errorf("insert room: %w", err)
		}
	}
	if d.partial != nil {
		if err := insertPartial(ctx, tx, r.id, d.partial); err != nil {
			return err
		}
	}
	if err := storeOutliers(ctx, tx, d.outliers, kindOutlier); err != nil {
		return err
	}
	before := d.beforeSnap
	if before == 0 {
		before = tx.NextPos()
		if _, err := e.writeSnapshot(ctx, tx, r.id, before, d.beforeBase, d.before, true); err != nil {
			return err
		}
	}
	ev.SnapshotBefore = before
	// The room's state as of a position is its last current-state
	// snapshot at or before it, so one the event brings about takes a
	// position just before the event's own.
	if d.currentChanged && !(ev.IsState() && d.evIsCurrent) {
		snap := tx.NextPos()
		chain, err := e.writeSnapshot(ctx, tx, r.id, snap, r.dbSnapshot, d.current, false)
		if err != nil {
			return err
		}
		setSnapshot(tx, r, snap, chain)
	}
	ev.Pos = tx.NextPos()
	if err := e.insertEvent(ctx, tx, r, ev); err != nil {
		return err
	}
	if ev.RedactedBy != "" {
		// A redaction received earlier applied to the event on arrival.
		if _, err := tx.Exec(ctx, "UPDATE events SET redacted_by = $1 WHERE event_id = $2", ev.RedactedBy, ev.ID); err != nil {
			return fmt.Errorf("mark event redacted: %w", err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM pending_redactions WHERE target_id = $1", ev.ID); err != nil {
			return fmt.Errorf("forget pending redaction: %w", err)
		}
	}
	if ev.IsState() {
		chain, err := e.writeSnapshot(ctx, tx, r.id, ev.Pos, before, withState(d.before, ev), !d.evIsCurrent)
		if err != nil {
			return err
		}
		if d.evIsCurrent {
			setSnapshot(tx, r, ev.Pos, chain)
		}
	}
	for _, u := range d.changedMembers {
		m := a.after.get("m.room.member", string(u))
		if m == nil {
			if _, err := tx.Exec(ctx, "DELETE FROM memberships WHERE room_id = $1 AND user_id = $2", r.id, u); err != nil {
				return fmt.Errorf("remove membership: %w", err)
			}
			continue
		}
		if err := upsertMembership(ctx, tx, r.id, m, ev.Pos); err != nil {
			return err
		}
	}
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil && !d.skipRedaction {
		if err := e.applyRedaction(ctx, tx, r, ev); err != nil {
			return err
		}
	}
	return e.finishPersist(ctx, tx, r, ev, a.after)
}

// writeSnapshot stores state as snapshot snap of the room: a delta on base
// when base holds every key of it and the chain stays short, the full
// state otherwise. It returns the new snapshot's chain length.
func (e *Engine) writeSnapshot(ctx context.Context, tx *storage.Tx, roomID id.RoomID, snap, base int64, state idState, fork bool) (int, error) {
	baseState, baseChain := idState{}, 0
	if base != 0 {
		var err error
		if baseState, baseChain, err = e.snapshotStateTx(ctx, tx, base); err != nil {
			return 0, err
		}
	}
	parent, chain := base, baseChain+1
	entries := idState{}
	for k, v := range state {
		if baseState[k] != v {
			entries[k] = v
		}
	}
	full := base == 0 || chain >= snapshotFullEvery
	for k := range baseState {
		if _, ok := state[k]; !ok {
			full = true
		}
	}
	if full {
		parent, chain, entries = 0, 0, state
	}
	if _, err := tx.Exec(ctx, "INSERT INTO state_snapshots (snapshot_id, room_id, parent_id, chain_len, fork) VALUES ($1, $2, $3, $4, $5)",
		snap, roomID, parent, chain, fork); err != nil {
		return 0, fmt.Errorf("insert snapshot: %w", err)
	}
	if err := insertSnapshotEntries(ctx, tx, snap, entries); err != nil {
		return 0, err
	}
	return chain, nil
}

// insertSnapshotEntries stores the entries of snapshot snap, in
// multi-row inserts.
func insertSnapshotEntries(ctx context.Context, tx *storage.Tx, snap int64, entries idState) error {
	keys := slices.Collect(maps.Keys(entries))
	return insertRows(keys, 4, func(part []stateKey, values string) error {
		args := make([]any, 0, len(part)*4)
		for _, k := range part {
			args = append(args, snap, k.Type, k.StateKey, entries[k])
		}
		if _, err := tx.Exec(ctx, "INSERT INTO state_snapshot_entries (snapshot_id, type, state_key, event_id) VALUES "+values, args...); err != nil {
			return fmt.Errorf("insert %d snapshot entries: %w", len(part), err)
		}
		return nil
	})
}
