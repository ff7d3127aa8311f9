package rooms

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Backfill fetches a room's history that this node lacks from the room's
// other servers (/backfill) when a page of /messages reaches it: history
// before a remote join, or a gap (an event whose prev_events were never
// received). Each event fetched passes the checks on receipt that need no
// state (format and size, signatures, content hash, the auth rules
// against its own auth_events, whose missing ones are fetched) and is
// stored in the timeline at a negative position, taken from a counter
// that only goes down: /sync, which moves forward from its token, never
// delivers it as new, and /messages places it by depth. A backfilled
// event changes nothing else: not the room's state, extremities,
// memberships, unread counts or search index, and its own state is not
// known (SnapshotBefore 0), so an event that follows it is treated as
// following an unknown event.

// Bounds of backfill.
const (
	// backfillLimit is the number of events asked of a server at once,
	// and the most accepted from one answer.
	backfillLimit = 100
	// backfillTimeout bounds one /messages page's backfill, all servers
	// together.
	backfillTimeout = 15 * time.Second
	// backfillServerTimeout bounds the request to one server.
	backfillServerTimeout = 8 * time.Second
	// backfillRounds is how many times one page backfills, for a gap that
	// the first answer did not close.
	backfillRounds = 3
	// backfillRetry is how long a gap that no server could fill is left
	// alone.
	backfillRetry = time.Minute
	// maxBackfillFrom bounds the event IDs one request starts from.
	maxBackfillFrom = 20
)

// backfills is the engine's backfill bookkeeping.
type backfills struct {
	mu sync.Mutex
	// running holds a channel per room whose backfill is under way,
	// closed when it ends: concurrent pages wait for it instead of asking
	// again.
	running map[id.RoomID]chan struct{}
	// failed holds when a gap (the event after it) could not be filled.
	failed map[id.EventID]time.Time

	// next is the last position handed to a backfilled event (negative);
	// loaded is set once it has been read from the database. Only the
	// database writer touches them.
	next   int64
	loaded bool
}

// HistoryBefore returns up to limit events of the room strictly between
// from and to in topological order, newest first, with a position at most
// upTo. When history is missing inside the page (an event of it, or the
// event at from, follows events this node lacks), it is fetched first from
// the room's other servers, within a deadline; a page whose history
// cannot be fetched is answered with what is stored.
func (e *Engine) HistoryBefore(ctx context.Context, roomID id.RoomID, from, to TopoPoint, upTo int64, limit int) ([]*Event, error) {
	var boundary *Event
	if e.Remote != nil && from != TopoEnd {
		evs, err := e.queryEvents(ctx, "WHERE room_id = $1 AND pos = $2", roomID, from.Pos)
		if err != nil {
			return nil, err
		}
		if len(evs) == 1 && evs[0].Depth == from.Depth {
			boundary = evs[0]
		}
	}
	return e.historyBefore(ctx, roomID, from, to, upTo, limit, boundary)
}

// HistoryBeforePos is HistoryBefore from a stream position (a /sync
// prev_batch): the events stored at or before pos (and backfilled ones), in
// topological order, newest first. Events stored later that come before
// some of them in topological order (an event from another server that
// arrived late) are not the page's: /sync gave them already. History
// missing before the room's first event stored after pos is fetched as
// HistoryBefore fetches it before its from point.
func (e *Engine) HistoryBeforePos(ctx context.Context, roomID id.RoomID, pos int64, to TopoPoint, upTo int64, limit int) ([]*Event, error) {
	var boundary *Event
	if e.Remote != nil {
		_, after, err := e.PointAfterPos(ctx, roomID, pos)
		if err != nil {
			return nil, err
		}
		boundary = after
	}
	return e.historyBefore(ctx, roomID, TopoEnd, to, min(upTo, pos), limit, boundary)
}

// historyBefore is HistoryBefore with the event whose history the page
// also covers (boundary, nil for none) given.
func (e *Engine) historyBefore(ctx context.Context, roomID id.RoomID, from, to TopoPoint, upTo int64, limit int, boundary *Event) ([]*Event, error) {
	deadline, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	for round := 0; ; round++ {
		evs, err := e.TopoEvents(ctx, roomID, from, to, upTo, limit, true)
		if err != nil || e.Remote == nil || round == backfillRounds {
			return evs, err
		}
		check := evs
		if len(evs) == limit {
			// History before the page's last event is the next page's.
			check = evs[:len(evs)-1]
		}
		if boundary != nil {
			check = append([]*Event{boundary}, check...)
		}
		gaps, err := e.gapsIn(ctx, check)
		if err != nil || len(gaps) == 0 {
			return evs, err
		}
		if !e.backfillGaps(deadline, roomID, gaps) {
			return evs, nil
		}
	}
}

// gapsIn returns the events of evs that follow events missing from the
// timeline here, leaving out those whose gap could not be filled lately.
func (e *Engine) gapsIn(ctx context.Context, evs []*Event) ([]*Event, error) {
	inPage := make(map[id.EventID]bool, len(evs))
	for _, ev := range evs {
		inPage[ev.ID] = true
	}
	var want []id.EventID
	for _, ev := range evs {
		for _, p := range ev.PDU.PrevEvents {
			if !inPage[p] {
				want = append(want, p)
			}
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	have := map[id.EventID]bool{}
	err := inChunks(want, func(part []id.EventID) error {
		// A rejected or soft-failed prev_event is known too: backfill
		// would bring it again and store nothing.
		in := placeholders(1, len(part))
		rows, err := e.db.Query(ctx, "SELECT event_id FROM events WHERE event_id IN ("+in+") UNION SELECT event_id FROM outlier_events WHERE kind IN ('"+kindRejected+"', '"+kindSoftFailed+"') AND event_id IN ("+in+")", anySlice(part)...)
		if err != nil {
			return fmt.Errorf("find gaps: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var eid id.EventID
			if err := rows.Scan(&eid); err != nil {
				return err
			}
			have[eid] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	e.backfill.mu.Lock()
	defer e.backfill.mu.Unlock()
	var gaps []*Event
	for _, ev := range evs {
		if t, ok := e.backfill.failed[ev.ID]; ok && time.Since(t) < backfillRetry {
			continue
		}
		if slices.ContainsFunc(ev.PDU.PrevEvents, func(p id.EventID) bool { return !inPage[p] && !have[p] }) {
			gaps = append(gaps, ev)
		}
	}
	return gaps, nil
}

// backfillGaps fetches the history missing before gaps, one backfill per
// room at a time: a page that finds one under way waits for it. It reports
// whether the page should be read again.
func (e *Engine) backfillGaps(ctx context.Context, roomID id.RoomID, gaps []*Event) bool {
	e.backfill.mu.Lock()
	if done, ok := e.backfill.running[roomID]; ok {
		e.backfill.mu.Unlock()
		select {
		case <-done:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if e.backfill.running == nil {
		e.backfill.running = map[id.RoomID]chan struct{}{}
		e.backfill.failed = map[id.EventID]time.Time{}
	}
	done := make(chan struct{})
	e.backfill.running[roomID] = done
	e.backfill.mu.Unlock()

	stored := e.fetchHistory(ctx, roomID, gaps)

	e.backfill.mu.Lock()
	delete(e.backfill.running, roomID)
	// A gap is left alone for a while only when the servers could not
	// fill it, not when the client that asked went away.
	if !stored && ctx.Err() == nil {
		now := time.Now()
		for eid, t := range e.backfill.failed {
			if now.Sub(t) >= backfillRetry {
				delete(e.backfill.failed, eid)
			}
		}
		for _, g := range gaps {
			e.backfill.failed[g.ID] = now
		}
	}
	e.backfill.mu.Unlock()
	close(done)
	return stored
}

// fetchHistory asks the room's servers, those of the gaps' senders first,
// for the events before gaps, and stores the first answer that brings
// anything new. It reports whether anything was stored.
func (e *Engine) fetchHistory(ctx context.Context, roomID id.RoomID, gaps []*Event) bool {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return false
	}
	var from []id.EventID
	var servers []string
	for _, g := range gaps {
		from = append(from, g.PDU.PrevEvents...)
		servers = append(servers, g.Sender.Homeserver())
	}
	slices.Sort(from)
	from = slices.Compact(from)
	from = from[:min(len(from), maxBackfillFrom)]
	// A partial-state room knows few members: the servers its join
	// answer named come first.
	servers = append(servers, r.partialServers()...)
	servers = append(servers, r.view().servers...)
	seen := map[string]bool{e.signer.ServerName: true}
	for _, server := range servers {
		if seen[server] || ctx.Err() != nil {
			continue
		}
		seen[server] = true
		sctx, cancel := context.WithTimeout(ctx, backfillServerTimeout)
		raws, err := e.Remote.Backfill(sctx, server, roomID, from, backfillLimit)
		cancel()
		if err != nil {
			e.log.Info("backfill failed", "room_id", roomID, "server", server, "err", err)
			continue
		}
		n, err := e.storeBackfilled(ctx, r, server, raws)
		if err != nil {
			e.log.Warn("storing backfilled events failed", "room_id", roomID, "server", server, "err", err)
			continue
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// storeBackfilled checks the events a server answered to /backfill and
// stores those that pass in the timeline, at backfill positions. It
// returns how many it stored.
func (e *Engine) storeBackfilled(ctx context.Context, r *room, origin string, raws []json.RawMessage) (int, error) {
	raws = raws[:min(len(raws), backfillLimit)]
	var evs []*Event
	var ids []id.EventID
	for _, raw := range raws {
		ev, err := e.parseRemote(ctx, r.version, raw)
		if err != nil || ev.RoomID != r.id || slices.Contains(ids, ev.ID) {
			continue
		}
		evs = append(evs, ev)
		ids = append(ids, ev.ID)
	}
	stored, err := e.anyEvents(ctx, ids)
	if err != nil {
		return 0, err
	}
	evs = slices.DeleteFunc(evs, func(ev *Event) bool {
		old := stored[ev.ID]
		// An outlier (state of the joined room) takes its place in the
		// timeline; the rest is known already.
		return old != nil && !(old.Outlier && !old.Rejected && !old.SoftFailed)
	})
	sortByDepth(evs)
	known := map[id.EventID]*Event{}
	var accepted, outliers []*Event
	for _, ev := range evs {
		opts := receiveOpts{known: known}
		if err := e.fetchAuthEvents(ctx, r, origin, ev, &opts); err != nil {
			continue
		}
		outliers = append(outliers, opts.outliers...)
		if err := authorizeRules(r.version, ev.PDU, nil, e.authEventLoader(ctx, known), e.keyFunc(ctx)); err != nil {
			if lacksAuthEvents(err) {
				continue
			}
			if err := e.reject(ctx, ev, err); err != nil {
				e.log.Info("a backfilled event was rejected", "room_id", r.id, "event_id", ev.ID, "err", err)
			}
			continue
		}
		known[ev.ID] = ev
		accepted = append(accepted, ev)
	}
	if len(accepted) == 0 {
		return 0, nil
	}
	// The newest takes the highest position, so that positions follow
	// the topological order within what one answer brought.
	slices.SortFunc(accepted, func(a, b *Event) int { return -cmp.Or(cmp.Compare(a.Depth, b.Depth), cmp.Compare(a.ID, b.ID)) })
	var inserted []*Event
	err = e.db.Write(ctx, func(tx *storage.Tx) error {
		inserted = inserted[:0]
		for _, x := range outliers {
			if err := storeOutlier(ctx, tx, x, kindOutlier, ""); err != nil {
				return err
			}
		}
		for _, ev := range accepted {
			var exists int
			err := tx.QueryRow(ctx, "SELECT 1 FROM events WHERE event_id = $1", ev.ID).Scan(&exists)
			if err == nil {
				continue // arrived meanwhile
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("backfill: %w", err)
			}
			pos, err := e.nextBackfillPos(ctx, tx)
			if err != nil {
				return err
			}
			b := *ev
			b.Pos, b.SnapshotBefore, b.Outlier, b.Gap = pos, 0, false, false
			if _, err := tx.Exec(ctx, "DELETE FROM outlier_events WHERE event_id = $1 AND kind = $2", ev.ID, kindOutlier); err != nil {
				return fmt.Errorf("backfill: %w", err)
			}
			if err := e.insertEvent(ctx, tx, r, &b); err != nil {
				return err
			}
			for _, h := range e.OnBackfill {
				if err := h(ctx, tx, &b); err != nil {
					return err
				}
			}
			inserted = append(inserted, &b)
		}
		tx.AfterCommit(func() {
			for _, ev := range inserted {
				e.cache.put(ev)
			}
		})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store backfilled events: %w", err)
	}
	return len(inserted), nil
}

// StoreHistory checks events of a room that origin sent outside /send and
// /backfill (MSC2836's /event_relationships answers) as backfilled events
// are checked, and stores those that pass in the timeline at backfill
// positions, as history learnt late. It returns how many it stored.
func (e *Engine) StoreHistory(ctx context.Context, roomID id.RoomID, origin string, raws []json.RawMessage) (int, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return 0, err
	}
	return e.storeBackfilled(ctx, r, origin, raws)
}

// nextBackfillPos hands out the next backfill position: below every
// position of the events table. It runs on the database writer only.
func (e *Engine) nextBackfillPos(ctx context.Context, tx *storage.Tx) (int64, error) {
	if !e.backfill.loaded {
		var low sql.NullInt64
		if err := tx.QueryRow(ctx, "SELECT MIN(pos) FROM events").Scan(&low); err != nil {
			return 0, fmt.Errorf("lowest position: %w", err)
		}
		e.backfill.next, e.backfill.loaded = min(low.Int64, 0), true
	}
	e.backfill.next--
	return e.backfill.next, nil
}
