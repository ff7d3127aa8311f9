package rooms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Relation types the server aggregates.
const (
	RelReplace   = "m.replace"
	RelThread    = "m.thread"
	RelReference = "m.reference"
)

// maxInList bounds the number of values in one SQL IN list; longer lists
// are split into several queries.
const maxInList = 500

// placeholders returns "$start, $start+1, ..." for n values.
func placeholders(start, n int) string { return storage.Placeholders(start, n) }

// inChunks calls f with ids split into lists of at most maxInList.
func inChunks[T any](ids []T, f func(part []T) error) error {
	for len(ids) > 0 {
		n := min(len(ids), maxInList)
		if err := f(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func anySlice[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// RelationsQuery selects the events relating to one event.
type RelationsQuery struct {
	RoomID    id.RoomID
	EventID   id.EventID
	RelType   string // optional
	EventType string // optional; only with RelType
	// Backwards pages from From down (pos <= From, pos > To); forwards
	// from From up (pos > From, pos <= To).
	Backwards bool
	From, To  int64
	Limit     int
	// Depth is how many relation hops to follow: 1 for direct relations
	// only.
	Depth int
}

// Relations returns a page of the events relating to q.EventID, newest
// first when paging backwards. Redacted events no longer relate.
func (e *Engine) Relations(ctx context.Context, q RelationsQuery) ([]*Event, error) {
	order := "ASC"
	var bounds string
	if q.Backwards {
		order = "DESC"
		bounds = "pos <= $3 AND pos > $4"
	} else {
		bounds = "pos > $3 AND pos <= $4"
	}
	args := []any{q.RoomID, q.EventID, q.From, q.To}
	var where string
	if q.Depth <= 1 {
		where = "WHERE relates_to = $2 AND room_id = $1"
	} else {
		// Follow relations of relations up to q.Depth hops; the filters
		// apply to the events returned, not to the chain.
		where = `WHERE event_id IN (
	WITH RECURSIVE rel(event_id, depth) AS (
		SELECT event_id, 1 FROM events WHERE relates_to = $2 AND room_id = $1 AND redacted_by IS NULL
		UNION
		SELECT ev.event_id, rel.depth + 1 FROM events ev JOIN rel ON ev.relates_to = rel.event_id
		WHERE rel.depth < ` + strconv.Itoa(q.Depth) + ` AND ev.room_id = $1 AND ev.redacted_by IS NULL
	) SELECT event_id FROM rel) AND room_id = $1`
	}
	where += " AND redacted_by IS NULL AND rejected = FALSE AND " + bounds
	if q.RelType != "" {
		args = append(args, q.RelType)
		where += " AND rel_type = $" + strconv.Itoa(len(args))
		if q.EventType != "" {
			args = append(args, q.EventType)
			where += " AND type = $" + strconv.Itoa(len(args))
		}
	}
	args = append(args, q.Limit)
	where += " ORDER BY pos " + order + " LIMIT $" + strconv.Itoa(len(args))
	return e.queryEvents(ctx, where, args...)
}

// ThreadRoot is a thread in a room's thread list.
type ThreadRoot struct {
	Root id.EventID
	// Latest is the position of the newest event in the thread.
	Latest int64
}

// ThreadsQuery selects a page of a room's threads.
type ThreadsQuery struct {
	RoomID id.RoomID
	// UpTo is the highest position the user may see.
	UpTo int64
	// Before: only threads whose newest visible event is at or before this
	// position (pagination).
	Before int64
	Limit  int
	// Participant, when set, keeps only threads this user started or
	// replied to.
	Participant id.UserID
}

// Threads lists a room's threads, most recently active first.
func (e *Engine) Threads(ctx context.Context, q ThreadsQuery) ([]ThreadRoot, error) {
	args := []any{q.RoomID, q.UpTo, q.Before, q.Limit}
	having := ""
	if q.Participant != "" {
		args = append(args, q.Participant)
		having = ` AND (SUM(CASE WHEN sender = $5 THEN 1 ELSE 0 END) > 0
			OR thread_id IN (SELECT event_id FROM events WHERE room_id = $1 AND sender = $5))`
	}
	rows, err := e.db.Query(ctx, `SELECT thread_id, MAX(pos) FROM events
		WHERE room_id = $1 AND thread_id IS NOT NULL AND redacted_by IS NULL AND rejected = FALSE AND pos <= $2
		GROUP BY thread_id HAVING MAX(pos) <= $3`+having+`
		ORDER BY MAX(pos) DESC LIMIT $4`, args...)
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	defer rows.Close()
	var out []ThreadRoot
	for rows.Next() {
		var t ThreadRoot
		if err := rows.Scan(&t.Root, &t.Latest); err != nil {
			return nil, fmt.Errorf("scan thread: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// EventNearTS returns the room's first event at or after ts (forward) or
// its last event at or before ts (backward), among events at positions up
// to upTo; nil if there is none.
func (e *Engine) EventNearTS(ctx context.Context, roomID id.RoomID, ts int64, forward bool, upTo int64) (*Event, error) {
	q := "WHERE room_id = $1 AND origin_ts >= $2 AND pos <= $3 AND rejected = FALSE ORDER BY origin_ts ASC, pos ASC LIMIT 1"
	if !forward {
		q = "WHERE room_id = $1 AND origin_ts <= $2 AND pos <= $3 AND rejected = FALSE ORDER BY origin_ts DESC, pos DESC LIMIT 1"
	}
	evs, err := e.queryEvents(ctx, q, roomID, ts, upTo)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0], nil
}

// LatestEventID returns the ID of the room's newest event (not one the
// full state of a room joined with partial state rejected).
func (e *Engine) LatestEventID(ctx context.Context, roomID id.RoomID) (id.EventID, error) {
	var evID id.EventID
	err := e.db.QueryRow(ctx, "SELECT event_id FROM events WHERE room_id = $1 AND rejected = FALSE ORDER BY pos DESC LIMIT 1", roomID).Scan(&evID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNoRoom
	}
	if err != nil {
		return "", fmt.Errorf("latest event: %w", err)
	}
	return evID, nil
}

// Aggregations are the bundled aggregations (unsigned["m.relations"]) of
// events, by event ID.
type Aggregations map[id.EventID]map[string]any

// Add puts the event's aggregations, if any, into its unsigned data and
// returns it.
func (a Aggregations) Add(ce *ClientEvent) *ClientEvent {
	if rel, ok := a[ce.EventID]; ok {
		if ce.Unsigned == nil {
			ce.Unsigned = map[string]any{}
		}
		ce.Unsigned["m.relations"] = rel
	}
	return ce
}

func (a Aggregations) set(evID id.EventID, relType string, v any) {
	m := a[evID]
	if m == nil {
		m = map[string]any{}
		a[evID] = m
	}
	m[relType] = v
}

// Aggregate computes the bundled aggregations of events about to be served
// to opts.User: the latest valid edit (m.replace), the thread summary
// (m.thread) and the references (m.reference). Only relations at positions
// up to upTo (what the user may see) count; redacted relations do not, and
// redacted events get none. It runs a fixed number of queries, however
// many events there are: one that finds the events anything relates to
// (most events have no relations), then one per relation type for those.
func (e *Engine) Aggregate(ctx context.Context, evs []*Event, opts ClientOptions, upTo int64) (Aggregations, error) {
	out := Aggregations{}
	byID := map[id.EventID]*Event{}
	var ids []id.EventID
	for _, ev := range evs {
		if ev == nil || ev.RedactedBy != "" || ev.Rejected || byID[ev.ID] != nil {
			continue
		}
		byID[ev.ID] = ev
		ids = append(ids, ev.ID)
	}
	ids, err := e.relationTargets(ctx, ids)
	if err != nil || len(ids) == 0 {
		return out, err
	}
	edits, err := e.latestEdits(ctx, byID, ids, upTo)
	if err != nil {
		return nil, err
	}
	for orig, edit := range edits {
		out.set(orig, RelReplace, edit.Client(opts))
	}
	if err := e.aggregateThreads(ctx, out, byID, ids, opts, upTo); err != nil {
		return nil, err
	}
	if err := e.aggregateReferences(ctx, out, ids, upTo); err != nil {
		return nil, err
	}
	return out, nil
}

// relationTargets returns those of ids that some stored event relates to,
// of any relation type and at any position. The lookup reads only the
// events_relates index.
func (e *Engine) relationTargets(ctx context.Context, ids []id.EventID) ([]id.EventID, error) {
	gen, ids := e.nonTargets.unknown(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	var out []id.EventID
	err := inChunks(ids, func(part []id.EventID) error {
		rows, err := e.db.Query(ctx, "SELECT DISTINCT relates_to FROM events WHERE relates_to IN ("+placeholders(1, len(part))+")", anySlice(part)...)
		if err != nil {
			return fmt.Errorf("load relation targets: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var target id.EventID
			if err := rows.Scan(&target); err != nil {
				return fmt.Errorf("scan relation target: %w", err)
			}
			out = append(out, target)
		}
		return rows.Err()
	})
	if err == nil {
		e.nonTargets.add(gen, ids, out)
	}
	return out, err
}

// nonTargets remembers events known to have no relation pointing at them,
// so that the bundled aggregations of /sync (every woken long-poll of a
// room asks about the same new events) skip the query for them; events
// built here are known at once (addBuilt), so a woken /sync that serves a
// local event reads nothing from the database for its aggregations. Any
// event stored with a relation forgets them all once it has committed.
type nonTargets struct {
	mu  sync.Mutex
	gen int64 // moved on by every event stored with a relation
	ids map[id.EventID]struct{}
}

// addBuilt records an event this server has just built, before it is
// queued for writing, as having no relations: a relation names its target
// by event ID, and no one else knows this event's ID before it commits
// (the woken /syncs that serve it and the send's answer come after). So
// the /sync that first serves a local event asks no query about it. An
// event never stored (its write failed) is remembered in vain, which is
// harmless; any relation stored later forgets it as it forgets all.
func (n *nonTargets) addBuilt(evID id.EventID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ids == nil || len(n.ids) >= maxNonTargets {
		n.ids = map[id.EventID]struct{}{}
	}
	n.ids[evID] = struct{}{}
}

// maxNonTargets bounds nonTargets; it starts afresh when full.
const maxNonTargets = 50_000

func (n *nonTargets) invalidate() {
	n.mu.Lock()
	n.gen++
	n.ids = nil
	n.mu.Unlock()
}

// unknown returns the ids not known to have no relations, and the
// generation to hand to add with what the query for them found.
func (n *nonTargets) unknown(ids []id.EventID) (gen int64, out []id.EventID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, evID := range ids {
		if _, ok := n.ids[evID]; !ok {
			out = append(out, evID)
		}
	}
	return n.gen, out
}

// add records the ids that a query started at generation gen found no
// relation for (those not in targets), unless a relation was stored since.
func (n *nonTargets) add(gen int64, ids, targets []id.EventID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if gen != n.gen {
		return
	}
	if n.ids == nil || len(n.ids) >= maxNonTargets {
		n.ids = map[id.EventID]struct{}{}
	}
	isTarget := make(map[id.EventID]bool, len(targets))
	for _, t := range targets {
		isTarget[t] = true
	}
	for _, evID := range ids {
		if !isTarget[evID] {
			n.ids[evID] = struct{}{}
		}
	}
}

// latestEdits returns, for each original event, its most recent valid
// replacement: same sender, same type, neither a state event, the original
// not itself an edit, the edit carrying m.new_content (unless encrypted).
// The newest by origin_server_ts wins, ties going to the greater event ID.
func (e *Engine) latestEdits(ctx context.Context, byID map[id.EventID]*Event, ids []id.EventID, upTo int64) (map[id.EventID]*Event, error) {
	out := map[id.EventID]*Event{}
	err := inChunks(ids, func(part []id.EventID) error {
		evs, err := e.queryEvents(ctx, "WHERE rel_type = 'm.replace' AND relates_to IN ("+placeholders(2, len(part))+
			") AND redacted_by IS NULL AND rejected = FALSE AND pos <= $1", append([]any{upTo}, anySlice(part)...)...)
		if err != nil {
			return fmt.Errorf("load edits: %w", err)
		}
		for _, edit := range evs {
			orig := byID[edit.RelatesTo]
			if orig == nil || !validEdit(orig, edit) {
				continue
			}
			if cur := out[orig.ID]; cur == nil || edit.TS > cur.TS || (edit.TS == cur.TS && edit.ID > cur.ID) {
				out[orig.ID] = edit
			}
		}
		return nil
	})
	return out, err
}

func validEdit(orig, edit *Event) bool {
	if orig.RoomID != edit.RoomID || orig.Sender != edit.Sender || orig.Type != edit.Type ||
		orig.IsState() || edit.IsState() || orig.RelType == RelReplace {
		return false
	}
	if edit.Type == "m.room.encrypted" {
		return true
	}
	var c struct {
		NewContent map[string]json.RawMessage `json:"m.new_content"`
	}
	return json.Unmarshal(edit.PDU.Content, &c) == nil && c.NewContent != nil
}

// aggregateThreads adds the m.thread summaries: the newest thread event
// (with its own latest edit), the number of thread events, and whether the
// user took part (sent the root or a reply).
func (e *Engine) aggregateThreads(ctx context.Context, out Aggregations, byID map[id.EventID]*Event, ids []id.EventID, opts ClientOptions, upTo int64) error {
	type summary struct {
		count, latest int64
		participated  bool
	}
	sums := map[id.EventID]*summary{}
	err := inChunks(ids, func(part []id.EventID) error {
		rows, err := e.db.Query(ctx, `SELECT relates_to, COUNT(*), MAX(pos), SUM(CASE WHEN sender = $1 THEN 1 ELSE 0 END) FROM events
			WHERE rel_type = 'm.thread' AND relates_to IN (`+placeholders(3, len(part))+`) AND redacted_by IS NULL AND rejected = FALSE AND pos <= $2
			GROUP BY relates_to`, append([]any{opts.User, upTo}, anySlice(part)...)...)
		if err != nil {
			return fmt.Errorf("load thread summaries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var root id.EventID
			var s summary
			var mine int64
			if err := rows.Scan(&root, &s.count, &s.latest, &mine); err != nil {
				return fmt.Errorf("scan thread summary: %w", err)
			}
			s.participated = mine > 0
			sums[root] = &s
		}
		return rows.Err()
	})
	if err != nil || len(sums) == 0 {
		return err
	}
	positions := make([]int64, 0, len(sums))
	for _, s := range sums {
		positions = append(positions, s.latest)
	}
	latest := map[int64]*Event{}
	err = inChunks(positions, func(part []int64) error {
		evs, err := e.queryEvents(ctx, "WHERE pos IN ("+placeholders(1, len(part))+")", anySlice(part)...)
		for _, ev := range evs {
			latest[ev.Pos] = ev
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("load latest thread events: %w", err)
	}
	latestByID := map[id.EventID]*Event{}
	var latestIDs []id.EventID
	for _, ev := range latest {
		latestByID[ev.ID] = ev
		latestIDs = append(latestIDs, ev.ID)
	}
	edits, err := e.latestEdits(ctx, latestByID, latestIDs, upTo)
	if err != nil {
		return err
	}
	for root, s := range sums {
		ev := latest[s.latest]
		if ev == nil || byID[root] == nil || ev.RoomID != byID[root].RoomID {
			continue
		}
		ce := ev.Client(opts)
		if edit := edits[ev.ID]; edit != nil {
			Aggregations{ev.ID: {RelReplace: edit.Client(opts)}}.Add(ce)
		}
		out.set(root, RelThread, map[string]any{
			"latest_event":              ce,
			"count":                     s.count,
			"current_user_participated": s.participated || byID[root].Sender == opts.User,
		})
	}
	return nil
}

// aggregateReferences adds the m.reference chunks (event IDs, oldest
// first).
func (e *Engine) aggregateReferences(ctx context.Context, out Aggregations, ids []id.EventID, upTo int64) error {
	refs := map[id.EventID][]any{}
	var order []id.EventID
	err := inChunks(ids, func(part []id.EventID) error {
		rows, err := e.db.Query(ctx, `SELECT relates_to, event_id FROM events
			WHERE rel_type = 'm.reference' AND relates_to IN (`+placeholders(2, len(part))+`) AND redacted_by IS NULL AND rejected = FALSE AND pos <= $1
			ORDER BY pos`, append([]any{upTo}, anySlice(part)...)...)
		if err != nil {
			return fmt.Errorf("load references: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var parent, child id.EventID
			if err := rows.Scan(&parent, &child); err != nil {
				return fmt.Errorf("scan reference: %w", err)
			}
			if refs[parent] == nil {
				order = append(order, parent)
			}
			refs[parent] = append(refs[parent], map[string]any{"event_id": child})
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	for _, parent := range order {
		out.set(parent, RelReference, map[string]any{"chunk": refs[parent]})
	}
	return nil
}
