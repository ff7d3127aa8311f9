package rooms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Partial-state joins (the spec's send_join omit_members, MSC3706 and
// MSC3902) on the joining side. A room joined with a send_join answer
// whose members_omitted is true holds the state before the join less the
// member events of other users (the heroes' excepted): enough to send,
// read and paginate at once. The room is marked partial (a
// partial_state_rooms row, written with the join), and a resync fetches
// the full state at the join (/state_ids, then the events not stored
// here by /event, or /state when they are many, read as a stream with
// memory bounded by StateBatch: statestream.go) from the servers the
// answer named
// (servers_in_room, the answering server first), checks it as a joined
// room's state is checked, and lays the members that were left out under
// the state the room reached meanwhile; then the mark is cleared. A node
// restarted meanwhile resumes the resync (StartResyncs).
//
// While the room is partial:
//   - a remote event whose sender's or target's member event is not in
//     the partial state is checked against the event's own auth events for
//     that key (which passed the checks on receipt), not refused; one whose
//     auth events name other events than the partial state for a key its
//     rules read is checked against the state resolution of the two
//     (partialAuthEvents);
//   - events from the servers the answer named are taken as from servers
//     in the room;
//   - the room's servers (JoinedServers, RoomInfo.JoinedServers: the
//     outbound queue's destinations) are those of the known members and
//     the servers the answer named.
// Once the full state is known, the remote events received during the
// resync that only the partial state could check are checked again, in
// the room's order, each against the state before it completed with the
// full state (recheckSincePartial): an accepted one the auth rules now
// refuse is rejected (never served again; a state event gives its key back
// to the state before it in the current state and in every stored state
// of the room that held it; the OnReject hooks drop what other packages
// derived from it: counts, notifications, index rows; a forward extremity
// gives way to the events it follows, so no event of ours names it), and
// one the state before it rejected that they now allow joins the timeline
// at a new position (a state event takes its key in the states after it)
// through the hooks every event joining the timeline runs (OnAccept,
// OnPersist, OnVisible, OnEvent).

// partialJoin is the mark of a room joined with partial state.
type partialJoin struct {
	joinID id.EventID
	// servers are those to fetch the full state from (the server that
	// answered send_join first), this one left out.
	servers []string
	// done is closed once the full state has replaced the partial one.
	done chan struct{}
}

func newPartialJoin(joinID id.EventID, servers []string) *partialJoin {
	return &partialJoin{joinID: joinID, servers: servers, done: make(chan struct{})}
}

// resyncers runs the background resyncs of partial-state rooms and stops
// them when the node does.
type resyncers struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	running map[id.RoomID]bool
	wg      sync.WaitGroup
}

func newResyncers() *resyncers {
	ctx, cancel := context.WithCancel(context.Background())
	return &resyncers{ctx: ctx, cancel: cancel, running: map[id.RoomID]bool{}}
}

// PartialStateRetry bounds the wait between two tries of a resync that
// failed (no server answered, or the answer did not check out).
var PartialStateRetry = time.Minute

// startResync starts the resync of r unless it runs already.
func (e *Engine) startResync(r *room) {
	rs := e.resyncs
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.running[r.id] || rs.ctx.Err() != nil {
		return
	}
	rs.running[r.id] = true
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		defer func() {
			rs.mu.Lock()
			delete(rs.running, r.id)
			rs.mu.Unlock()
		}()
		e.resync(rs.ctx, r.id)
	}()
}

// StartResyncs resumes the resync of every room still marked partial (a
// node restarted during one). The node calls it once federation is
// wired.
func (e *Engine) StartResyncs(ctx context.Context) error {
	ids, err := storage.Column[id.RoomID](ctx, e.db, "SELECT room_id FROM partial_state_rooms")
	if err != nil {
		return fmt.Errorf("partial-state rooms: %w", err)
	}
	for _, roomID := range ids {
		r, err := e.room(ctx, roomID)
		if err != nil {
			return err
		}
		if r.partial.Load() != nil {
			e.startResync(r)
		}
	}
	return nil
}

// StopResyncs stops the running resyncs and waits for them; the rooms
// stay marked, for the next start.
func (e *Engine) StopResyncs() {
	e.resyncs.mu.Lock()
	e.resyncs.cancel()
	e.resyncs.mu.Unlock()
	e.resyncs.wg.Wait()
}

// loadPartial reads the room's partial-state mark, if any.
func (e *Engine) loadPartial(ctx context.Context, r *room) error {
	var completedAt int64
	err := e.db.QueryRow(ctx, "SELECT pos FROM partial_state_completed WHERE room_id = $1", r.id).Scan(&completedAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("load room %s: partial state completion: %w", r.id, err)
	}
	r.completedAt.Store(completedAt)
	var joinID, servers string
	err = e.db.QueryRow(ctx, "SELECT join_event_id, servers FROM partial_state_rooms WHERE room_id = $1", r.id).Scan(&joinID, &servers)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load room %s: partial state: %w", r.id, err)
	}
	var list []string
	if err := json.Unmarshal([]byte(servers), &list); err != nil {
		return fmt.Errorf("room %s: partial state servers: %w", r.id, err)
	}
	r.partial.Store(newPartialJoin(id.EventID(joinID), list))
	return nil
}

// insertPartial writes the mark of a room joined with partial state.
func insertPartial(ctx context.Context, tx *storage.Tx, roomID id.RoomID, pj *partialJoin) error {
	servers, _ := json.Marshal(pj.servers)
	if _, err := tx.Exec(ctx, "INSERT INTO partial_state_rooms (room_id, join_event_id, servers) VALUES ($1, $2, $3)",
		roomID, pj.joinID, string(servers)); err != nil {
		return fmt.Errorf("mark the room partial: %w", err)
	}
	return nil
}

// HasPartialState reports whether the room's state is still partial (it
// was joined with members omitted and the resync has not finished).
func (e *Engine) HasPartialState(ctx context.Context, roomID id.RoomID) bool {
	r, err := e.room(ctx, roomID)
	return err == nil && r.partial.Load() != nil
}

// StateCompletedAt returns the stream position at which the room's
// partial state became complete here, 0 when it was never partial (or
// the room is not known).
func (e *Engine) StateCompletedAt(ctx context.Context, roomID id.RoomID) int64 {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return 0
	}
	return r.completedAt.Load()
}

// AwaitFullState waits, at most until ctx ends, until the room's state is
// complete, and reports whether it is.
func (e *Engine) AwaitFullState(ctx context.Context, roomID id.RoomID) bool {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return true // nothing partial about a room not known here
	}
	pj := r.partial.Load()
	if pj == nil {
		return true
	}
	select {
	case <-pj.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// partialServers returns the servers the room's partial-state mark names
// (nil once the state is complete).
func (r *room) partialServers() []string {
	if pj := r.partial.Load(); pj != nil {
		return pj.servers
	}
	return nil
}

// unionServers merges sorted server lists with extra (any order) into a
// new sorted list, each once.
func unionServers(sorted, extra []string) []string {
	if len(extra) == 0 {
		return sorted
	}
	out := slices.Concat(sorted, extra)
	slices.Sort(out)
	return slices.Compact(out)
}

// partialAuthEvents returns, in a partial-state room, the auth events
// the rules take from the state st for a remote event (authEventsIn), as
// MSC3902 asks: since st may lack or be wrong about keys the full state
// settles, the event is checked against st resolved with the event's own
// auth events (which passed the checks on receipt). A member event the
// selection wants and st lacks is taken from the event's auth events; a
// key for which st and the event's auth events hold different events is
// settled by state resolution between the two, limited to the keys the
// event's auth rules read: a ban st knows still refuses a banned user's
// event, while a kick accepted by st alone (its sender's membership taken
// from its own auth events) that does not cite its target's join loses to
// that join, so the kicked user's own leave, citing the join, passes.
// Only the auth decision reads the result: the state before and after the
// event stay st's.
func (e *Engine) partialAuthEvents(ctx context.Context, r *room, st *roomState, ev *Event, known map[id.EventID]*Event, getEvents func([]id.EventID) ([]*pdu.PDU, error)) ([]*pdu.PDU, error) {
	out := authEventsIn(r.version, st, ev)
	if r.partial.Load() == nil {
		return out, nil
	}
	own, err := getEvents(ev.PDU.AuthEvents)
	if err != nil {
		return nil, err
	}
	sel := ev.PDU.AuthEventSelection(r.version)
	claimed, local := idState{}, idState{}
	for i, ae := range own {
		if ae != nil && ae.StateKey != nil && sel.Has(pdu.StateKey{Type: ae.Type, StateKey: *ae.StateKey}) {
			claimed[stateKey{ae.Type, *ae.StateKey}] = ev.PDU.AuthEvents[i]
		}
	}
	conflict := false
	for _, k := range sel {
		sk := stateKey{k.Type, k.StateKey}
		if cur := st.get(k.Type, k.StateKey); cur != nil {
			local[sk] = cur.ID
			if c, ok := claimed[sk]; ok && c != cur.ID {
				conflict = true
			}
		}
	}
	if !conflict {
		for _, ae := range own {
			if ae == nil || ae.StateKey == nil || ae.Type != "m.room.member" {
				continue
			}
			k := stateKey{ae.Type, *ae.StateKey}
			if _, ok := claimed[k]; ok && local[k] == "" {
				out = append(out, ae)
			}
		}
		return out, nil
	}
	resolved, err := e.resolve(ctx, r, []idState{local, claimed}, known)
	if err != nil {
		return nil, fmt.Errorf("resolve the partial state with the auth events of %s: %w", ev.ID, err)
	}
	var ids []id.EventID
	for _, k := range sel {
		if eid, ok := resolved[stateKey{k.Type, k.StateKey}]; ok {
			ids = append(ids, eid)
		}
	}
	evs, err := getEvents(ids)
	if err != nil {
		return nil, err
	}
	out = []*pdu.PDU{} // nil would make the rules read auth_events
	for _, p := range evs {
		if p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// resync fetches the room's full state until it has it or ctx ends,
// waiting longer after each failure (up to PartialStateRetry). Each try
// takes the room afresh, as a failed write makes the engine drop it.
func (e *Engine) resync(ctx context.Context, roomID id.RoomID) {
	wait := time.Second
	for {
		r, err := e.room(ctx, roomID)
		if errors.Is(err, ErrNoRoom) {
			return // purged
		}
		if err == nil {
			pj := r.partial.Load()
			if pj == nil {
				return // complete, or purged
			}
			if err = e.resyncOnce(ctx, r, pj); err == nil {
				e.log.Info("partial-state room resynced", "room_id", roomID)
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("partial-state resync failed; retrying", "room_id", roomID, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, PartialStateRetry)
	}
}

// resyncOnce asks each server of the mark in turn for the state at the
// join and completes the room's state with the first answer that checks
// out.
func (e *Engine) resyncOnce(ctx context.Context, r *room, pj *partialJoin) error {
	if e.Remote == nil {
		return errNoFederation
	}
	at, withAt, err := e.resyncPoint(ctx, pj)
	if err != nil {
		return err
	}
	errs := []error{}
	for _, server := range pj.servers {
		full, err := e.fullStateAt(ctx, server, r, at, withAt)
		if err != nil {
			errs = append(errs, fmt.Errorf("the state from %s: %w", server, err))
			continue
		}
		if err := e.completeState(ctx, r, pj, full); err != nil {
			errs = append(errs, fmt.Errorf("the state from %s: %w", server, err))
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no server to fetch the full state from")
	}
	return errors.Join(errs...)
}

// resyncPoint names the event whose state the resync asks for. The state
// at the join is the state after its prev event: the state before that
// event (what /state_ids and /state answer) with the event itself when it
// is a state event (withAt). Asking for the prev event rather than the
// join asks what every resident knows, whether or not our join reached it
// yet, as the spec's servers do; a join with several prev events asks for
// the state before the join itself.
func (e *Engine) resyncPoint(ctx context.Context, pj *partialJoin) (at id.EventID, withAt bool, err error) {
	join, err := e.storedEvent(ctx, pj.joinID)
	if err != nil {
		return "", false, fmt.Errorf("the join event: %w", err)
	}
	if join == nil || len(join.PDU.PrevEvents) != 1 {
		return pj.joinID, false, nil
	}
	return join.PDU.PrevEvents[0], true, nil
}

// fetchManyEvents is how many events of the state at the join the resync
// fetches one by one (/event) before it asks for the whole state (/state)
// instead.
const fetchManyEvents = 100

// fullStateAt asks server for the state before the event at and its
// auth chain, checks them (checkStreamedState: the events that pass are
// stored) and returns the state. It asks for their IDs (/state_ids), then
// for the events not stored here, one by one (/event, a few at a time)
// when they are few, or for the whole state, streamed (/state),
// otherwise. withAt adds the event at itself to the state, overriding
// what the state before it holds for its key.
func (e *Engine) fullStateAt(ctx context.Context, server string, r *room, at id.EventID, withAt bool) (idState, error) {
	stateIDs, chainIDs, err := e.Remote.GetStateIDs(ctx, server, r.id, at)
	if err != nil {
		return nil, err
	}
	atOverride := id.EventID("")
	if withAt {
		stateIDs = append(stateIDs, at)
		atOverride = at
	}
	all := slices.Concat(stateIDs, chainIDs)
	stored, err := e.anyEvents(ctx, all)
	if err != nil {
		return nil, err
	}
	var missing []id.EventID
	for _, eid := range all {
		if stored[eid] == nil && !slices.Contains(missing, eid) {
			missing = append(missing, eid)
		}
		if len(missing) > fetchManyEvents {
			return e.checkStreamedState(ctx, r.version, r.id, atOverride, func(add func(bool, json.RawMessage) error) error {
				return e.streamWholeStateAt(ctx, server, r.id, at, withAt, add)
			})
		}
	}
	fetched, err := e.fetchEvents(ctx, server, missing)
	if err != nil {
		return nil, err
	}
	return e.checkStreamedState(ctx, r.version, r.id, atOverride, func(add func(bool, json.RawMessage) error) error {
		for i, eid := range slices.Concat(stateIDs, chainIDs) {
			raw := fetched[eid]
			if ev := stored[eid]; ev != nil {
				raw = json.RawMessage(ev.JSON)
			}
			if err := add(i < len(stateIDs), raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// streamWholeStateAt hands the events of server's /state answer before at
// to add as they are read, then the event at itself when withAt.
func (e *Engine) streamWholeStateAt(ctx context.Context, server string, roomID id.RoomID, at id.EventID, withAt bool, add func(bool, json.RawMessage) error) error {
	if err := e.Remote.GetState(ctx, server, roomID, at, func(authChain bool, raw json.RawMessage) error {
		return add(!authChain, raw)
	}); err != nil {
		return err
	}
	if !withAt {
		return nil
	}
	atEvent, err := e.storedEvent(ctx, at)
	if err != nil {
		return err
	}
	if atEvent != nil {
		return add(true, json.RawMessage(atEvent.JSON))
	}
	raw, err := e.Remote.GetEvent(ctx, server, at)
	if err != nil {
		return err
	}
	return add(true, raw)
}

// fetchEvents asks server for each event of ids (/event), 8 at a time.
func (e *Engine) fetchEvents(ctx context.Context, server string, ids []id.EventID) (map[id.EventID]json.RawMessage, error) {
	fetched := make([]json.RawMessage, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	slots := make(chan struct{}, 8)
	for i, eid := range ids {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			fetched[i], errs[i] = e.Remote.GetEvent(ctx, server, eid)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]json.RawMessage, len(ids))
	for i, eid := range ids {
		byID[eid] = fetched[i]
	}
	return byID, nil
}

// completeState replaces the room's partial state: full (the full state
// before the join, checked by checkStreamedState, its events stored) has
// its keys the room's current state lacks added to it, the remote state
// events accepted since the join are checked again, and the new current
// state is written with the mark's removal.
func (e *Engine) completeState(ctx context.Context, r *room, pj *partialJoin, full idState) error {
	r.settle()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.partial.Load() != pj {
		return nil // purged meanwhile
	}
	if err := r.drain(); err != nil {
		return err
	}
	if r.broken.Load() {
		return errPipelineBroken
	}
	head := r.head
	if err := e.redactWaiting(ctx, r, head); err != nil {
		return err
	}
	cur := idsOf(head)
	for k, eid := range full {
		if _, ok := cur[k]; !ok {
			cur[k] = eid
		}
	}
	flips, err := e.recheckSincePartial(ctx, r, pj, cur, full)
	if err != nil {
		return err
	}
	ext, err := e.extremitiesWithout(ctx, r, head.extremities, flips)
	if err != nil {
		return err
	}
	takeAllowedKeys(cur, flips, ext)
	allowed := map[id.EventID]*Event{}
	for _, f := range flips {
		if f.allowed {
			allowed[f.ev.ID] = f.ev
		}
	}
	after, err := e.stateFrom(ctx, head, cur, allowed, ext, head.depth)
	if err != nil {
		return err
	}
	if err := e.unredactState(ctx, after, flips); err != nil {
		return err
	}
	// The events the full state allows join the timeline as any event
	// does: the OnAccept hooks see each with the state right after it,
	// before the write is queued, and the write runs the OnPersist hooks,
	// then the OnVisible and OnEvent ones.
	built, err := e.allowedEvents(ctx, after, flips, allowed)
	if err != nil {
		return err
	}
	wctx := context.WithoutCancel(ctx)
	prepared := e.runAcceptHooks(wctx, r, built)
	changed := changedMemberKeys(head, cur)
	var local []id.UserID
	wait := sync.OnceValue(e.db.Enqueue(wctx, func(tx *storage.Tx) error {
		if r.broken.Load() {
			return errPipelineBroken
		}
		if err := e.writeFullState(wctx, tx, r, after, full, cur, flips, built, prepared, changed, &local); err != nil {
			return err
		}
		if len(e.OnVisible) > 0 && len(built) > 0 {
			tx.AfterVisible(func() { e.runVisibleHooks(r, built) })
		}
		return nil
	}))
	r.lastWrite = wait
	if err := wait(); err != nil {
		e.dropRoom(r)
		return fmt.Errorf("write the full state: %w", err)
	}
	r.head = after
	for _, f := range flips {
		e.cache.drop(f.ev.ID)
		for _, x := range f.after {
			e.cache.drop(x.ID)
		}
	}
	r.partial.Store(nil)
	close(pj.done)
	for _, a := range built {
		e.runHooks(r, a)
	}
	if local != nil {
		// Now that the positions are visible: a woken /sync sees them.
		for _, h := range e.OnStateComplete {
			h(r.id, local)
		}
	}
	return nil
}

// allowedEvents makes the events the full state allows (flips, in order)
// timeline events, no longer rejected, each with the room's state right
// after it, for the hooks: cur is the room's complete current state, known
// the allowed events.
func (e *Engine) allowedEvents(ctx context.Context, cur *roomState, flips []*flip, known map[id.EventID]*Event) ([]accepted, error) {
	var out []accepted
	for _, f := range flips {
		if !f.allowed {
			continue
		}
		st, err := e.stateFrom(ctx, cur, f.state, known, nil, f.ev.Depth)
		if err != nil {
			return nil, fmt.Errorf("the state after %s: %w", f.ev.ID, err)
		}
		f.state = nil
		ev := f.ev
		ev.Rejected, ev.PDU.InternalMeta.Rejected = false, false
		ev.RelType, ev.RelatesTo, ev.ThreadID = relationOf(ev.PDU.Content)
		out = append(out, accepted{ev: ev, after: st})
	}
	return out, nil
}

// writeFullState is completeState's write (the state's events are stored
// already, by checkStreamedState): the full state's keys laid under every snapshot of the room
// (all were built on the partial state), the new current state as a
// snapshot at a fresh position, the memberships it adds or changes, and
// the mark's removal; the committed view follows once it has committed,
// and local is set to the room's local joined members then.
func (e *Engine) writeFullState(ctx context.Context, tx *storage.Tx, r *room, after *roomState, full, cur idState, flips []*flip, built []accepted, prepared [][]PersistFunc, changed []id.UserID, local *[]id.UserID) error {
	if err := completeSnapshots(ctx, tx, r.id, full); err != nil {
		return err
	}
	if err := e.writeFlips(ctx, tx, r, flips, built, prepared); err != nil {
		return err
	}
	// The newest event the full state allowed, now in the timeline: the
	// room's last position covers it, so that an incremental /sync past
	// the last one reads the room's timeline again.
	var lastEv int64
	for _, f := range flips {
		if f.allowed {
			lastEv = max(lastEv, f.ev.Pos)
		}
	}
	snap := tx.NextPos()
	chain, err := e.writeSnapshot(ctx, tx, r.id, snap, r.dbSnapshot, cur, false)
	if err != nil {
		return err
	}
	setSnapshot(tx, r, snap, chain)
	for _, u := range changed {
		m := after.get("m.room.member", string(u))
		if m == nil {
			if _, err := tx.Exec(ctx, "DELETE FROM memberships WHERE room_id = $1 AND user_id = $2", r.id, u); err != nil {
				return fmt.Errorf("remove membership: %w", err)
			}
			continue
		}
		if err := upsertMembership(ctx, tx, r.id, m, snap); err != nil {
			return err
		}
	}
	ext, _ := json.Marshal(after.extremities)
	if _, err := tx.Exec(ctx, "UPDATE rooms SET snapshot = $1, last_pos = CASE WHEN last_pos < $2 THEN $2 ELSE last_pos END, extremities = $3 WHERE room_id = $4", snap, lastEv, string(ext), r.id); err != nil {
		return fmt.Errorf("update room: %w", err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM partial_state_rooms WHERE room_id = $1", r.id); err != nil {
		return fmt.Errorf("clear the partial-state mark: %w", err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM partial_redacted WHERE room_id = $1", r.id); err != nil {
		return fmt.Errorf("forget the targets of redactions while partial: %w", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO partial_state_completed (room_id, pos) VALUES ($1, $2) ON CONFLICT (room_id) DO UPDATE SET pos = excluded.pos", r.id, snap); err != nil {
		return fmt.Errorf("note the partial state's completion: %w", err)
	}
	tx.AfterCommit(func() { *local = e.commitFullState(r, after, changed, snap, lastEv) })
	return nil
}

// completeSnapshots adds the keys of full that they lack to the roots of
// the room's snapshot chains (the full copies: the state before the join
// and those written every snapshotFullEvery changes), so that every
// snapshot, the states before and after the events received since the
// join included, holds the full state under what changed since.
func completeSnapshots(ctx context.Context, tx *storage.Tx, roomID id.RoomID, full idState) error {
	rows, err := tx.Query(ctx, "SELECT snapshot_id FROM state_snapshots WHERE room_id = $1 AND parent_id = 0", roomID)
	if err != nil {
		return fmt.Errorf("the room's snapshots: %w", err)
	}
	var roots []int64
	for rows.Next() {
		var snap int64
		if err := rows.Scan(&snap); err != nil {
			rows.Close()
			return err
		}
		roots = append(roots, snap)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, snap := range roots {
		has := map[stateKey]bool{}
		rows, err := tx.Query(ctx, "SELECT type, state_key FROM state_snapshot_entries WHERE snapshot_id = $1", snap)
		if err != nil {
			return fmt.Errorf("snapshot %d: %w", snap, err)
		}
		for rows.Next() {
			var k stateKey
			if err := rows.Scan(&k.Type, &k.StateKey); err != nil {
				rows.Close()
				return err
			}
			has[k] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		lacking := idState{}
		for k, eid := range full {
			if !has[k] {
				lacking[k] = eid
			}
		}
		if err := insertSnapshotEntries(ctx, tx, snap, lacking); err != nil {
			return err
		}
	}
	return nil
}

// commitFullState moves the committed view to the complete state and
// notes the position at which it became complete (pos, the new
// snapshot's) and that of the newest event the full state allowed (lastEv,
// 0 for none). It returns the room's local joined members, for the
// OnStateComplete hooks (nil when the room was purged).
func (e *Engine) commitFullState(r *room, after *roomState, changed []id.UserID, pos, lastEv int64) []id.UserID {
	e.snaps.reset()
	r.completedAt.Store(pos)
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	if r.purged {
		return nil
	}
	next := *after
	next.depth = r.cur.depth
	r.cur = &next
	r.lastStatePos = max(r.lastStatePos, pos)
	r.lastPos = max(r.lastPos, lastEv)
	if len(changed) > 0 {
		r.lastMemberPos = max(r.lastMemberPos, pos)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, u := range changed {
		e.setMembershipLocked(u, r.id, next.members[u])
		// The members the full state brought are membership changes at
		// the position the state became complete, as a member event's
		// are at its own: /sync's device lists name them.
		e.memberPos[u] = max(e.memberPos[u], pos)
		e.memberLog.Add(pos, MemberChange{Pos: pos, RoomID: r.id, UserID: u})
	}
	local := []id.UserID{}
	for u, m := range next.members {
		if m == "join" && u.Homeserver() == e.signer.ServerName {
			local = append(local, u)
		}
	}
	return local
}

// flip is an event whose verdict the full state changes: one accepted
// while the room's state was partial that the full state refuses (it
// becomes rejected), or one rejected then by the state before it that the
// full state allows (it joins the timeline). old is the state's event for
// its key before it ("" for none; state events only): where the states
// after it held it, a refused one gives its key back to old; where they
// hold old, an allowed one takes its key.
type flip struct {
	ev      *Event
	allowed bool
	old     id.EventID
	// after are the events checked after an allowed one that follow it
	// (its descendants among them): the states before and after them
	// gain it. Those whose verdict stands are kept as what the write
	// needs of them (ID, position, snapshot before, type and state key);
	// afterIDs indexes them.
	after    []*Event
	afterIDs map[id.EventID]bool
	// from is the allowed event's snapshot before it as stored.
	from int64
	// state is the room's state right after an allowed event, for the
	// hooks its write runs (dropped once they have it).
	state idState
}

// stateAfterAllowed is the room's state right after ev, an event the full
// state allows: every key of the state before it as stored (snap) and of
// the full state at the join, as before (which corrects them by the
// flips before ev) names it, and ev's own.
func stateAfterAllowed(ev *Event, snap, full idState, following []*flip, before func(stateKey) id.EventID) idState {
	st := make(idState, max(len(snap), len(full)))
	add := func(k stateKey) {
		if _, done := st[k]; done {
			return
		}
		if eid := before(k); eid != "" {
			st[k] = eid
		}
	}
	for k := range snap {
		add(k)
	}
	for k := range full {
		add(k)
	}
	for _, f := range following {
		if f.ev.StateKey != nil {
			add(stateKey{f.ev.Type, *f.ev.StateKey})
		}
	}
	return withState(st, ev)
}

// follows reports whether ev follows f's event: names it, or an event
// that follows it, as a prev event.
func (f *flip) follows(ev *Event) bool {
	for _, p := range ev.PDU.PrevEvents {
		if p == f.ev.ID || f.afterIDs[p] {
			return true
		}
	}
	return false
}

// addAfter notes x, checked after f's (allowed) event, as following it.
func (f *flip) addAfter(x *Event) {
	if f.afterIDs == nil {
		f.afterIDs = map[id.EventID]bool{}
	}
	f.after = append(f.after, x)
	f.afterIDs[x.ID] = true
}

// recheckPages reads the events recheckSincePartial checks again, in the
// room's order, a page (Engine.StateBatch events) at a time from each of
// their two tables, so that memory holds two pages, not every event
// received during the resync: the remote events of the timeline after the
// join, by (depth, position), and the room's events rejected by the state
// before them, by (depth, event ID), after the timeline's of the same
// depth. Each page starts past the last key read, and each table is read
// in its key's order, so the merge yields exactly the order of one sort
// of them all: an event of a later page never comes before one already
// yielded (it may have a lower position, never a lower key).
type recheckPages struct {
	e       *Engine
	roomID  id.RoomID
	joinPos int64
	size    int

	timeline     []*Event
	timelineDone bool
	depth, pos   int64 // the timeline's last key read
	rejected     []*Event
	rejectedDone bool
	rejDepth     int64 // the rejected events' last key read
	rejID        id.EventID
}

func newRecheckPages(e *Engine, roomID id.RoomID, joinPos int64) *recheckPages {
	return &recheckPages{e: e, roomID: roomID, joinPos: joinPos, size: e.stateBatch(),
		depth: math.MinInt64, pos: math.MinInt64, rejDepth: math.MinInt64}
}

// next returns the next event in the room's order, nil after the last.
func (p *recheckPages) next(ctx context.Context) (*Event, error) {
	if len(p.timeline) == 0 && !p.timelineDone {
		evs, err := p.e.queryEvents(ctx, fmt.Sprintf(`WHERE room_id = $1 AND pos > $2 AND rejected = FALSE
			AND (depth > $3 OR (depth = $3 AND pos > $4)) ORDER BY depth, pos LIMIT %d`, p.size), p.roomID, p.joinPos, p.depth, p.pos)
		if err != nil {
			return nil, err
		}
		p.timeline, p.timelineDone = evs, len(evs) < p.size
		if len(evs) > 0 {
			p.depth, p.pos = evs[len(evs)-1].Depth, evs[len(evs)-1].Pos
		}
	}
	if len(p.rejected) == 0 && !p.rejectedDone {
		evs, err := p.e.rejectedPage(ctx, p.roomID, p.rejDepth, p.rejID, p.size)
		if err != nil {
			return nil, err
		}
		p.rejected, p.rejectedDone = evs, len(evs) < p.size
		if len(evs) > 0 {
			p.rejDepth, p.rejID = evs[len(evs)-1].Depth, evs[len(evs)-1].ID
		}
	}
	var ev *Event
	switch {
	case len(p.timeline) > 0 && (len(p.rejected) == 0 || p.timeline[0].Depth <= p.rejected[0].Depth):
		ev, p.timeline = p.timeline[0], p.timeline[1:]
	case len(p.rejected) > 0:
		ev, p.rejected = p.rejected[0], p.rejected[1:]
	}
	return ev, nil
}

// recheckSincePartial checks again, in the order of the room's history
// (depth, then position), the remote events received since the join that
// the room's state could only check against the partial state: those
// accepted, and those rejected by the state before them (not those their
// own auth events refused). Each is checked against the state before it
// completed with full (the full state at the join) and corrected by the
// verdicts changed before it. It returns the changed verdicts, and
// updates cur (the room's complete current state) for them. The
// rejection of an event received while the state was partial is decided
// here, once the full state is known, as the spec asks.
func (e *Engine) recheckSincePartial(ctx context.Context, r *room, pj *partialJoin, cur, full idState) ([]*flip, error) {
	join, err := e.storedEvent(ctx, pj.joinID)
	if err != nil || join == nil || join.Pos <= 0 {
		return nil, err
	}
	getEvents := e.authEventLoader(ctx, nil)
	keys := e.keyFunc(ctx)
	var flips []*flip
	pages := newRecheckPages(e, r.id, join.Pos)
	for {
		ev, err := pages.next(ctx)
		if err != nil {
			return nil, err
		}
		if ev == nil {
			break
		}
		if ev.Sender.Homeserver() == e.signer.ServerName {
			continue
		}
		snap, _, err := e.snapshotState(ctx, ev.SnapshotBefore)
		if err != nil {
			return nil, err
		}
		var following []*flip
		for _, f := range flips {
			if f.allowed && f.follows(ev) {
				following = append(following, f)
			}
		}
		before := func(k stateKey) id.EventID {
			eid, ok := snap[k]
			if !ok {
				eid = full[k]
			}
			for _, f := range flips {
				switch {
				case !f.allowed && eid == f.ev.ID:
					eid = f.old
				case f.allowed && f.ev.StateKey != nil && eid == f.old && *f.ev.StateKey == k.StateKey && f.ev.Type == k.Type && slices.Contains(following, f):
					eid = f.ev.ID
				}
			}
			return eid
		}
		err = e.recheckOne(r.version, ev, before, getEvents, keys)
		if (err == nil) != ev.Rejected {
			// The verdict stands: the allowed events it follows keep what
			// their writes need of it, not the event (its page goes).
			if len(following) > 0 {
				later := &Event{ID: ev.ID, Pos: ev.Pos, SnapshotBefore: ev.SnapshotBefore, Type: ev.Type, StateKey: ev.StateKey, Rejected: ev.Rejected}
				for _, f := range following {
					f.addAfter(later)
				}
			}
			continue
		}
		for _, f := range following {
			f.addAfter(ev)
		}
		f := &flip{ev: ev, allowed: err == nil, from: ev.SnapshotBefore}
		if f.allowed {
			f.state = stateAfterAllowed(ev, snap, full, following, before)
			e.log.Info("an event received during a partial-state resync and rejected is allowed by the full state", "room_id", r.id, "event_id", ev.ID)
		} else {
			e.log.Info("an event received during a partial-state resync is refused by the full state", "room_id", r.id, "event_id", ev.ID, "reason", authMessage(err))
		}
		if ev.StateKey != nil {
			k := stateKey{ev.Type, *ev.StateKey}
			f.old = before(k)
			switch {
			case !f.allowed && cur[k] == ev.ID && f.old == "":
				delete(cur, k)
			case !f.allowed && cur[k] == ev.ID:
				cur[k] = f.old
			}
		}
		flips = append(flips, f)
	}
	return flips, nil
}

// takeAllowedKeys gives each allowed state event of flips its key in cur,
// the room's current state, when the room's extremities ext follow it and
// the key still holds what it held before it.
func takeAllowedKeys(cur idState, flips []*flip, ext []id.EventID) {
	for _, f := range flips {
		if !f.allowed || f.ev.StateKey == nil {
			continue
		}
		k := stateKey{f.ev.Type, *f.ev.StateKey}
		followed := slices.ContainsFunc(ext, func(x id.EventID) bool {
			return x == f.ev.ID || slices.ContainsFunc(f.after, func(a *Event) bool { return a.ID == x })
		})
		if followed && cur[k] == f.old {
			cur[k] = f.ev.ID
		}
	}
}

// maxChildScan bounds the events deeper than a candidate extremity that
// extremitiesWithout reads for one naming it: a candidate with more
// deeper events than this is taken to be followed (it is far from the
// room's newest events).
const maxChildScan = 256

// extremitiesWithout returns the room's forward extremities ext once the
// refused events of flips have left the timeline: the spec has a server
// never name a rejected event in the prev_events of its events, so a
// refused extremity gives way to the events it follows (through refused
// and rejected ones, as statePrevs walks them), those no accepted event
// follows already, an allowed one included.
func (e *Engine) extremitiesWithout(ctx context.Context, r *room, ext []id.EventID, flips []*flip) ([]id.EventID, error) {
	refused := map[id.EventID]*Event{}
	allowed := map[id.EventID]*Event{}
	for _, f := range flips {
		if f.allowed {
			allowed[f.ev.ID] = f.ev
		} else {
			refused[f.ev.ID] = f.ev
		}
	}
	var want []id.EventID
	out := make([]id.EventID, 0, len(ext))
	for _, x := range ext {
		if ev := refused[x]; ev != nil {
			want = append(want, ev.PDU.PrevEvents...)
		} else {
			out = append(out, x)
		}
	}
	if len(want) == 0 {
		return ext, nil
	}
	seen := map[id.EventID]bool{}
	var cands []*Event
	for walked := 0; len(want) > 0 && walked < maxRejectedPrevsWalked; walked++ {
		p := want[0]
		want = want[1:]
		if seen[p] || slices.Contains(out, p) {
			continue
		}
		seen[p] = true
		if ev := refused[p]; ev != nil {
			want = append(want, ev.PDU.PrevEvents...)
			continue
		}
		if ev := allowed[p]; ev != nil {
			cands = append(cands, ev)
			continue
		}
		in, err := e.timelineEvents(ctx, []id.EventID{p})
		if err != nil {
			return nil, err
		}
		if len(in) == 1 {
			cands = append(cands, in[0])
			continue
		}
		outside, err := e.outliers(ctx, []id.EventID{p}, true)
		if err != nil {
			return nil, err
		}
		if len(outside) == 1 && outside[0].Rejected {
			want = append(want, outside[0].PDU.PrevEvents...)
		}
	}
	kept := len(out)
	for _, c := range cands {
		followed, err := e.followedByAccepted(ctx, r, c, refused, allowed)
		if err != nil {
			return nil, err
		}
		if !followed {
			out = append(out, c.ID)
		}
	}
	if len(out) == 0 {
		// Something to build on, whatever follows the candidates.
		for _, c := range cands[kept:] {
			out = append(out, c.ID)
		}
	}
	return out, nil
}

// followedByAccepted reports whether an accepted event of the room, once
// the flips are written (refused ones out of the timeline, allowed ones
// in), names ev as a prev event; it reads at most maxChildScan events
// deeper than ev, and takes ev for followed past them.
func (e *Engine) followedByAccepted(ctx context.Context, r *room, ev *Event, refused, allowed map[id.EventID]*Event) (bool, error) {
	for _, a := range allowed {
		if slices.Contains(a.PDU.PrevEvents, ev.ID) {
			return true, nil
		}
	}
	deeper, err := e.queryEvents(ctx, fmt.Sprintf("WHERE room_id = $1 AND depth > $2 AND rejected = FALSE ORDER BY depth, pos LIMIT %d", maxChildScan+1), r.id, ev.Depth)
	if err != nil {
		return false, err
	}
	if len(deeper) > maxChildScan {
		return true, nil
	}
	for _, x := range deeper {
		if refused[x.ID] == nil && slices.Contains(x.PDU.PrevEvents, ev.ID) {
			return true, nil
		}
	}
	return false, nil
}

// recheckOne checks ev against its own auth events when it was rejected
// (a rejection they decided stands), then against the state before it
// that before names.
func (e *Engine) recheckOne(v id.RoomVersion, ev *Event, before func(stateKey) id.EventID, getEvents func([]id.EventID) ([]*pdu.PDU, error), keys pdu.GetKeyFunc) error {
	pd := ev.PDU
	if ev.Rejected {
		c := *ev.PDU
		c.InternalMeta.Rejected = false
		pd = &c
		if err := authorizeRules(v, pd, nil, getEvents, keys); err != nil {
			return err
		}
	}
	var ids []id.EventID
	for _, k := range pd.AuthEventSelection(v) {
		if eid := before(stateKey{k.Type, k.StateKey}); eid != "" {
			ids = append(ids, eid)
		}
	}
	authEvents, err := getEvents(ids)
	if err != nil {
		return err
	}
	authEvents = slices.DeleteFunc(authEvents, func(p *pdu.PDU) bool { return p == nil })
	return authorizeRules(v, pd, authEvents, getEvents, keys)
}

// rejectedPage loads, by (depth, event ID) after the key given, at most
// size of the room's events rejected by the state before them (stored
// with it: those the auth rules refused by their own auth events, or
// during the join, have none).
func (e *Engine) rejectedPage(ctx context.Context, roomID id.RoomID, depth int64, after id.EventID, size int) ([]*Event, error) {
	rows, err := e.db.Query(ctx, fmt.Sprintf(`SELECT event_id, room_id, kind, type, state_key, sender, depth, origin_ts, json, snapshot_before
		FROM outlier_events WHERE room_id = $1 AND kind = 'rejected' AND snapshot_before > 0
		AND (depth > $2 OR (depth = $2 AND event_id > $3)) ORDER BY depth, event_id LIMIT %d`, size), roomID, depth, after)
	if err != nil {
		return nil, fmt.Errorf("the room's rejected events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		ev, err := scanOutlier(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// writeFlips writes the changed verdicts: a refused event is marked
// rejected and its key, in every snapshot of the room that holds it, given
// back to the state before it; an allowed one leaves the rejected events
// for the timeline, at a new position, with the state after it when it is
// a state event, and the states before and after the events that follow
// it, where they were built on the state before it, are built on that
// one instead.
func (e *Engine) writeFlips(ctx context.Context, tx *storage.Tx, r *room, flips []*flip, built []accepted, prepared [][]PersistFunc) error {
	i := 0
	for _, f := range flips {
		if f.allowed {
			if err := e.writeAllowed(ctx, tx, r, f); err != nil {
				return err
			}
			if err := e.runPersistHooks(ctx, tx, r, built[i], prepared[i]); err != nil {
				return err
			}
			i++
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE events SET rejected = TRUE WHERE event_id = $1", f.ev.ID); err != nil {
			return fmt.Errorf("reject %s: %w", f.ev.ID, err)
		}
		if f.ev.Type == "m.room.redaction" && f.ev.PDU.Redacts != nil {
			if err := e.unredact(ctx, tx, r, f.ev); err != nil {
				return fmt.Errorf("reject %s: %w", f.ev.ID, err)
			}
		}
		// What the hooks derived from it when it was persisted goes too.
		for _, h := range e.OnReject {
			if err := h(ctx, tx, f.ev); err != nil {
				return fmt.Errorf("reject %s: %w", f.ev.ID, err)
			}
		}
		// The event leaves the timeline: the newest events in memory, which
		// /sync, /messages and the followers read, forget it too.
		tx.AfterCommit(func() {
			r.recent.drop(f.ev.ID)
			e.committed.dropEvent(f.ev.ID)
		})
		if f.ev.StateKey == nil {
			continue
		}
		const inRoom = " WHERE event_id = $1 AND type = $2 AND state_key = $3 AND snapshot_id IN (SELECT snapshot_id FROM state_snapshots WHERE room_id = $4)"
		var err error
		if f.old == "" {
			_, err = tx.Exec(ctx, "DELETE FROM state_snapshot_entries"+inRoom, f.ev.ID, f.ev.Type, *f.ev.StateKey, r.id)
		} else {
			_, err = tx.Exec(ctx, "UPDATE state_snapshot_entries SET event_id = $5"+inRoom, f.ev.ID, f.ev.Type, *f.ev.StateKey, r.id, f.old)
		}
		if err != nil {
			return fmt.Errorf("take rejected %s out of the room's states: %w", f.ev.ID, err)
		}
	}
	return nil
}

// redactWaiting redacts, as stored, the outliers of the room that a
// redaction received before them waits for (pending_redactions): state
// events the resync brought, a redaction of which arrived while the state
// was partial. st judges whether each redaction's sender may redact its
// target (redactionAllowed), as for a target that joins the timeline.
func (e *Engine) redactWaiting(ctx context.Context, r *room, st *roomState) error {
	rows, err := e.db.Query(ctx, `SELECT p.target_id, p.redaction_id FROM pending_redactions p
		JOIN outlier_events o ON o.event_id = p.target_id WHERE p.room_id = $1 AND o.kind <> 'rejected'`, r.id)
	if err != nil {
		return fmt.Errorf("redactions waiting for outliers: %w", err)
	}
	var targetIDs, redIDs []id.EventID
	for rows.Next() {
		var t, red id.EventID
		if err := rows.Scan(&t, &red); err != nil {
			rows.Close()
			return err
		}
		targetIDs, redIDs = append(targetIDs, t), append(redIDs, red)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(redIDs) == 0 {
		return err
	}
	targets, err := e.outliers(ctx, targetIDs, false)
	if err != nil {
		return err
	}
	reds, err := e.timelineEvents(ctx, redIDs)
	if err != nil {
		return err
	}
	return e.db.Write(ctx, func(tx *storage.Tx) error {
		for _, red := range reds {
			if red.PDU.Redacts == nil {
				continue
			}
			i := slices.IndexFunc(targets, func(t *Event) bool { return t.ID == *red.PDU.Redacts })
			if i < 0 || red.RoomID != r.id || !redactionAllowed(st, red, targets[i]) {
				continue
			}
			if err := e.applyRedaction(ctx, tx, r, red); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM pending_redactions WHERE target_id = $1 AND redaction_id = $2", targets[i].ID, red.ID); err != nil {
				return fmt.Errorf("forget pending redaction: %w", err)
			}
		}
		return nil
	})
}

// unredact undoes what applyRedaction did for red, a redaction applied
// while the room's state was partial that the full state refuses: its
// target gets back the JSON kept then (partial_redacted), unless another
// redaction has redacted it since, and one still waiting for its target
// is forgotten. The OnReject hooks, which run next, read the target
// restored (search indexes it again).
func (e *Engine) unredact(ctx context.Context, tx *storage.Tx, r *room, red *Event) error {
	targetID := *red.PDU.Redacts
	if _, err := tx.Exec(ctx, "DELETE FROM pending_redactions WHERE redaction_id = $1", red.ID); err != nil {
		return fmt.Errorf("forget the pending redaction: %w", err)
	}
	var raw string
	err := tx.QueryRow(ctx, "SELECT original_json FROM partial_redacted WHERE event_id = $1", targetID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // not redacted by it while partial
	}
	if err != nil {
		return fmt.Errorf("load the redaction's target as it was: %w", err)
	}
	res, err := tx.Exec(ctx, "UPDATE events SET json = $1, redacted_by = NULL WHERE event_id = $2 AND redacted_by = $3", raw, targetID, red.ID)
	if err != nil {
		return fmt.Errorf("restore the redaction's target: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		// A target held as an outlier, or one redacted by another since.
		var cur string
		err := tx.QueryRow(ctx, "SELECT json FROM outlier_events WHERE event_id = $1", targetID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) || err == nil && redactedByOf([]byte(cur)) != red.ID {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load the redaction's target: %w", err)
		}
		if _, err := tx.Exec(ctx, "UPDATE outlier_events SET json = $1 WHERE event_id = $2", raw, targetID); err != nil {
			return fmt.Errorf("restore the redaction's target: %w", err)
		}
	}
	p, err := parsePDU([]byte(raw))
	if err != nil {
		return fmt.Errorf("parse the redaction's target: %w", err)
	}
	tx.AfterCommit(func() { e.rewritten(r, targetID, p, []byte(raw), "") })
	return nil
}

// unredactState gives after, the room's new current state, back the
// state events that redactions the full state refuses had redacted
// (roomState.with keeps a redacted copy in the state): each as kept in
// partial_redacted, or else from the copy's own JSON.
func (e *Engine) unredactState(ctx context.Context, after *roomState, flips []*flip) error {
	cloned := false
	for _, f := range flips {
		if f.allowed || f.ev.Type != "m.room.redaction" || f.ev.PDU.Redacts == nil {
			continue
		}
		t := after.byID[*f.ev.PDU.Redacts]
		if t == nil || t.RedactedBy != f.ev.ID {
			continue
		}
		raw := t.JSON
		var kept string
		err := e.db.QueryRow(ctx, "SELECT original_json FROM partial_redacted WHERE event_id = $1", t.ID).Scan(&kept)
		if err == nil {
			raw = []byte(kept)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("load %s as it was: %w", t.ID, err)
		}
		p, err := parsePDU(raw)
		if err != nil {
			return fmt.Errorf("parse %s: %w", t.ID, err)
		}
		cp := *t
		cp.PDU, cp.JSON, cp.RedactedBy = p, raw, ""
		if !cloned {
			// The maps may be the old state's, which readers hold.
			after.state, after.byID = maps.Clone(after.state), maps.Clone(after.byID)
			cloned = true
		}
		after.set(&cp)
	}
	return nil
}

// writeAllowed is writeFlips for an event the full state allows.
func (e *Engine) writeAllowed(ctx context.Context, tx *storage.Tx, r *room, f *flip) error {
	ev := f.ev
	if _, err := tx.Exec(ctx, "DELETE FROM outlier_events WHERE event_id = $1", ev.ID); err != nil {
		return fmt.Errorf("allow %s: %w", ev.ID, err)
	}
	ev.Pos = tx.NextPos()
	if err := e.insertEvent(ctx, tx, r, ev); err != nil {
		return err
	}
	tx.AfterCommit(func() { r.recent.add(ev) })
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		// As persist does: an allowed redaction redacts its target.
		if err := e.applyRedaction(ctx, tx, r, ev); err != nil {
			return err
		}
	}
	if ev.StateKey == nil {
		return nil
	}
	k := stateKey{ev.Type, *ev.StateKey}
	base, _, err := e.snapshotStateTx(ctx, tx, ev.SnapshotBefore)
	if err != nil {
		return err
	}
	after := maps.Clone(base)
	after[k] = ev.ID
	if _, err := e.writeSnapshot(ctx, tx, r.id, ev.Pos, ev.SnapshotBefore, after, false); err != nil {
		return err
	}
	for _, x := range f.after {
		if x.SnapshotBefore == f.from {
			x.SnapshotBefore = ev.Pos
			if x.Pos > 0 {
				if _, err := tx.Exec(ctx, "UPDATE events SET snapshot_before = $1 WHERE event_id = $2", ev.Pos, x.ID); err != nil {
					return fmt.Errorf("the state before %s: %w", x.ID, err)
				}
			}
		}
		if x.Pos <= 0 || x.StateKey == nil || x.Rejected {
			continue
		}
		// The state after x: a delta on the state before ev now follows
		// ev; a full copy holding what ev replaced takes ev.
		if _, err := tx.Exec(ctx, "UPDATE state_snapshots SET parent_id = $1 WHERE snapshot_id = $2 AND parent_id = $3", ev.Pos, x.Pos, f.from); err != nil {
			return fmt.Errorf("the state after %s: %w", x.ID, err)
		}
		if f.old != "" && (x.Type != k.Type || *x.StateKey != k.StateKey) {
			if _, err := tx.Exec(ctx, "UPDATE state_snapshot_entries SET event_id = $1 WHERE snapshot_id = $2 AND type = $3 AND state_key = $4 AND event_id = $5 AND snapshot_id IN (SELECT snapshot_id FROM state_snapshots WHERE parent_id = 0)",
				ev.ID, x.Pos, k.Type, k.StateKey, f.old); err != nil {
				return fmt.Errorf("the state after %s: %w", x.ID, err)
			}
		}
	}
	return nil
}
