package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tidwall/gjson"

	"github.com/matrixos/matrixos/internal/rooms"
)

var errNoRows = sql.ErrNoRows

// OnEvent is the room engine's hook: it wakes the follower, which reads the
// event from the events table. It never blocks.
func (l *Log) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	if ev.Pos <= 0 {
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Start runs the follower until Close: it appends the events of ledger
// rooms committed since the mark, at once and then on each wake-up.
func (l *Log) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.follow(ctx)
	}()
	l.stopFollower = func() {
		cancel()
		<-done
	}
}

func (l *Log) follow(ctx context.Context) {
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		for {
			more, err := l.Step(ctx)
			if err != nil {
				if ctx.Err() == nil {
					l.log.Error("ledger: append events", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-tick.C:
		}
	}
}

// followQuery reads the committed events after a position that the
// follower must look at: those of rooms with the ledger on, and the state
// events that turn it on or off. $3 set logs every room.
const followQuery = `SELECT e.pos, e.room_id, e.event_id, e.type, e.state_key, e.json, COALESCE(l.enabled, FALSE)
	FROM events e LEFT JOIN ledger_rooms l ON l.room_id = e.room_id
	WHERE e.pos > $1 AND e.pos <= $2 AND ($3 OR l.enabled OR e.type = '` + StateType + `')
	ORDER BY e.pos LIMIT 1000`

// Step appends the next events of ledger rooms from the events table (at
// most batchSize; up to and including the next event that turns a room's
// ledger on or off) and records them. It reports whether more may be
// waiting. The follower calls it; tests call it to catch up at once.
func (l *Log) Step(ctx context.Context) (more bool, err error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if err := l.loadMark(ctx); err != nil {
		return false, err
	}
	if err := l.recover(ctx); err != nil {
		return false, err
	}
	visible := l.db.Visible()
	if visible <= l.mark.pos {
		return false, nil
	}
	candidates, toggles, last, full, err := l.scan(ctx, l.mark.pos, visible)
	if err != nil {
		return false, err
	}
	if !full {
		last = visible
	}
	entries, idx, fresh := l.matchRecovered(candidates)
	next := mark{pos: last, size: l.mark.size + uint64(len(idx))}
	if len(fresh) > 0 {
		got, err := l.appendBatch(ctx, fresh)
		if err != nil {
			l.recovered = nil // read the log's size again
			return false, err
		}
		entries = append(entries, fresh...)
		idx = append(idx, got...)
		next.size = got[len(got)-1] + 1
	}
	if len(entries) == 0 && len(toggles) == 0 {
		l.setMark(mark{pos: last, size: l.mark.size}) // nothing to record: a restart reads the same nothing again
		return full, nil
	}
	if err := l.record(ctx, entries, idx, toggles, next); err != nil {
		return false, err
	}
	return full, nil
}

// scan reads the events after pos up to visible that the log must hold, in
// order, stopping after a batch or after an event that turns a room's
// ledger on or off (the query's view of the rooms is then out of date).
// full reports that it stopped early; last is the last position read.
func (l *Log) scan(ctx context.Context, pos, visible int64) (entries []Entry, toggles map[string]bool, last int64, full bool, err error) {
	rows, err := l.db.Query(ctx, followQuery, pos, visible, l.opts.All)
	if err != nil {
		return nil, nil, 0, false, fmt.Errorf("read events for the ledger: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var roomID, eventID, evType, raw string
		var stateKey sql.NullString
		var enabled bool
		if err := rows.Scan(&last, &roomID, &eventID, &evType, &stateKey, &raw, &enabled); err != nil {
			return nil, nil, 0, false, fmt.Errorf("read events for the ledger: %w", err)
		}
		n++
		toggle := evType == StateType && stateKey.Valid && stateKey.String == ""
		on := toggle && gjson.Get(raw, "content.enabled").Type == gjson.True
		if l.opts.All || enabled || on {
			entries = append(entries, Entry{RoomID: roomID, EventID: eventID, ContentHash: gjson.Get(raw, "hashes.sha256").String()})
		}
		if toggle {
			if on != enabled {
				toggles = map[string]bool{roomID: on}
			}
			return entries, toggles, last, true, rows.Close()
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, false, fmt.Errorf("read events for the ledger: %w", err)
	}
	return entries, toggles, last, n == batchSize, nil
}

// matchRecovered pairs the first candidates with the recovered entries
// (the log's entries not recorded yet), which were appended from the same
// events in the same order. It returns the matched entries with their
// indexes and the candidates still to append. Recovered entries that no
// candidate matches (their event is gone) are given up: they stay in the
// log, unrecorded.
func (l *Log) matchRecovered(candidates []Entry) (matched []Entry, idx []uint64, fresh []Entry) {
	i := 0
	for ; i < len(candidates) && i < len(l.recovered); i++ {
		if candidates[i] != l.recovered[i] {
			break
		}
		matched = append(matched, candidates[i])
		idx = append(idx, l.mark.size+uint64(i))
	}
	fresh = candidates[i:]
	switch {
	case i == len(l.recovered):
		l.recovered = nil
	case len(fresh) > 0:
		// The next candidate is not the next recovered entry: the rest
		// of them belong to no event the follower will read, and the
		// fresh entries go after them.
		l.log.Warn("ledger: entries in the log match no event", "from", l.mark.size+uint64(i), "count", len(l.recovered)-i)
		l.recovered = nil
	default:
		l.recovered = l.recovered[i:]
	}
	return matched, idx, fresh
}
