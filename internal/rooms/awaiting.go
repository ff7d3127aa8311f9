package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// A remote event whose auth events are not all known here, even after
// asking its sender's server for them, cannot be checked: it is neither
// accepted nor rejected (the missing events may still come, in another
// transaction, through a gap being filled, or with the state of a join).
// Such an event waits for them in awaiting_auth and is checked again, as
// on receipt, when one of them is stored; its sender, which got an error
// for it, does not send it again.

// Bounds of the events waiting for their auth events.
const (
	// maxAwaitingPerRoom bounds the events of one room that wait.
	maxAwaitingPerRoom = 100
	// AwaitingAuthLifetime is how long an event waits before it is
	// forgotten.
	AwaitingAuthLifetime = 24 * time.Hour
)

// awaitedIDs remembers, in memory, which events some waiting event names
// as a missing auth event, so that storing an event costs a lookup only
// when one waits for it.
type awaitedIDs struct {
	once sync.Once
	mu   sync.Mutex
	ids  map[id.EventID]int // missing auth event -> events waiting for it
	err  error
}

// load reads the awaited IDs from the database, once.
func (a *awaitedIDs) load(ctx context.Context, db *storage.DB) error {
	a.once.Do(func() {
		a.ids = map[id.EventID]int{}
		rows, err := db.Query(ctx, "SELECT missing_id FROM awaiting_auth")
		if err != nil {
			a.err = fmt.Errorf("load awaited auth events: %w", err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var m id.EventID
			if err := rows.Scan(&m); err != nil {
				a.err = fmt.Errorf("load awaited auth events: %w", err)
				return
			}
			a.ids[m]++
		}
		a.err = rows.Err()
	})
	return a.err
}

// awaitAuthEvents keeps ev, received from origin as raw, to be checked
// again when one of missing, its auth events not known here, is stored.
// It answers the refusal for ev.
func (e *Engine) awaitAuthEvents(ctx context.Context, origin string, ev *Event, raw json.RawMessage, missing []id.EventID) error {
	refusal := mxhttp.Forbidden("event %s names auth events this server does not have (%v); it is checked again when they arrive", ev.ID, missing)
	if err := e.awaited.load(ctx, e.db); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	err := e.db.Write(ctx, func(tx *storage.Tx) error {
		var waiting int
		if err := tx.QueryRow(ctx, "SELECT COUNT(DISTINCT event_id) FROM awaiting_auth WHERE room_id = $1", ev.RoomID).Scan(&waiting); err != nil {
			return fmt.Errorf("count awaiting events: %w", err)
		}
		if waiting >= maxAwaitingPerRoom {
			return nil
		}
		for _, m := range missing {
			if _, err := tx.Exec(ctx, `INSERT INTO awaiting_auth (missing_id, event_id, room_id, origin, json, received_ts)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, m, ev.ID, ev.RoomID, origin, string(raw), now); err != nil {
				return fmt.Errorf("keep an event awaiting its auth events: %w", err)
			}
		}
		tx.AfterCommit(func() {
			e.awaited.mu.Lock()
			defer e.awaited.mu.Unlock()
			for _, m := range missing {
				e.awaited.ids[m]++
			}
		})
		return nil
	})
	if err != nil {
		return err
	}
	return refusal
}

// recheckAwaiting checks again, as on receipt, the events that waited for
// one of stored, events this node has just stored, as an auth event.
func (e *Engine) recheckAwaiting(ctx context.Context, stored []id.EventID) {
	if e.awaited.load(ctx, e.db) != nil {
		return
	}
	var found []id.EventID
	e.awaited.mu.Lock()
	for _, s := range stored {
		if e.awaited.ids[s] > 0 {
			found = append(found, s)
		}
	}
	e.awaited.mu.Unlock()
	if len(found) == 0 {
		return
	}
	type waiting struct {
		eventID id.EventID
		origin  string
		raw     string
	}
	var evs []waiting
	err := e.db.Write(ctx, func(tx *storage.Tx) error {
		evs = evs[:0]
		in := placeholders(1, len(found))
		rows, err := tx.Query(ctx, "SELECT DISTINCT event_id, origin, json FROM awaiting_auth WHERE missing_id IN ("+in+")", anySlice(found)...)
		if err != nil {
			return fmt.Errorf("find awaiting events: %w", err)
		}
		for rows.Next() {
			var w waiting
			if err := rows.Scan(&w.eventID, &w.origin, &w.raw); err != nil {
				rows.Close()
				return fmt.Errorf("find awaiting events: %w", err)
			}
			evs = append(evs, w)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var missing []id.EventID
		for _, w := range evs {
			mrows, err := tx.Query(ctx, "DELETE FROM awaiting_auth WHERE event_id = $1 RETURNING missing_id", w.eventID)
			if err != nil {
				return fmt.Errorf("forget an awaiting event: %w", err)
			}
			for mrows.Next() {
				var m id.EventID
				if err := mrows.Scan(&m); err == nil {
					missing = append(missing, m)
				}
			}
			mrows.Close()
		}
		tx.AfterCommit(func() {
			e.awaited.mu.Lock()
			defer e.awaited.mu.Unlock()
			for _, m := range missing {
				if e.awaited.ids[m]--; e.awaited.ids[m] <= 0 {
					delete(e.awaited.ids, m)
				}
			}
		})
		return nil
	})
	if err != nil {
		e.log.Warn("events awaiting their auth events", "err", err)
		return
	}
	for _, w := range evs {
		if _, err := e.ReceivePDU(ctx, w.origin, json.RawMessage(w.raw)); err != nil {
			e.log.Info("an event checked again once an auth event arrived was refused", "event_id", w.eventID, "err", err)
		}
	}
}

// ExpireAwaitingAuth forgets the events that have waited for their auth
// events since before before, and returns how many rows went.
func (e *Engine) ExpireAwaitingAuth(ctx context.Context, before time.Time) (int64, error) {
	if err := e.awaited.load(ctx, e.db); err != nil {
		return 0, err
	}
	var expired int64
	err := e.db.Write(ctx, func(tx *storage.Tx) error {
		rows, err := tx.Query(ctx, "DELETE FROM awaiting_auth WHERE received_ts < $1 RETURNING missing_id", before.UnixMilli())
		if err != nil {
			return fmt.Errorf("expire awaiting events: %w", err)
		}
		var gone []id.EventID
		for rows.Next() {
			var m id.EventID
			if err := rows.Scan(&m); err == nil {
				gone = append(gone, m)
			}
		}
		rows.Close()
		expired = int64(len(gone))
		tx.AfterCommit(func() {
			e.awaited.mu.Lock()
			defer e.awaited.mu.Unlock()
			for _, m := range gone {
				if e.awaited.ids[m]--; e.awaited.ids[m] <= 0 {
					delete(e.awaited.ids, m)
				}
			}
		})
		return rows.Err()
	})
	return expired, err
}
