package ledger

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

var errNoRows = sql.ErrNoRows

// OnEvent is the room engine's hook: it wakes the follower, which reads the
// event with the engine's CommittedEvents, when the event may concern the
// log: with All, or when the room has the ledger on as the follower last
// read it (so its turning off is seen) or in its state right after the
// event (so its turning on is seen, whatever event resolved it). Other
// events cost no round; the next round still reads past them. It never
// blocks.
func (l *Log) OnEvent(ev *rooms.Event, info *rooms.RoomInfo) {
	if ev.Pos > 0 && l.mayConcern(ev, info) {
		l.follower.Wake()
	}
}

// mayConcern reports whether ev may call for an entry or a switch of the
// room's ledger.
func (l *Log) mayConcern(ev *rooms.Event, info *rooms.RoomInfo) bool {
	if l.opts.All || l.enabled.MayHave(ev.RoomID) || info == nil || !info.HasState() {
		return true
	}
	toggle := info.StateEvent(StateType, "")
	return toggle != nil && gjson.GetBytes(toggle.JSON, "content.enabled").Type == gjson.True
}

// Start runs the follower until Close: it appends the events of ledger
// rooms committed since the mark, at once and then on each wake-up.
func (l *Log) Start() { l.follower.Start() }

// Step appends the next committed events of ledger rooms (at most
// batchSize; up to the next position where a room's ledger turns on
// or off) and records them. It reports whether more may be waiting. The
// follower calls it; tests call it to catch up at once.
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
	sw, err := l.nextSwitch(ctx, l.mark.pos, visible)
	if err != nil {
		return false, err
	}
	end := visible
	if sw != nil {
		end = sw.pos
	}
	candidates, last, full, err := l.scan(ctx, l.mark.pos, end, sw)
	if err != nil {
		return false, err
	}
	var toggles map[string]bool
	if !full {
		last = end
		if sw != nil {
			toggles = map[string]bool{sw.room: sw.on}
		}
	}
	more = full || end < visible
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
		return more, nil
	}
	if err := l.record(ctx, entries, idx, toggles, next); err != nil {
		return false, err
	}
	return more, nil
}

// ledgerSwitch is a room's ledger turning on or off at a stream position:
// the room's resolved state from pos on says so.
type ledgerSwitch struct {
	pos  int64
	room string
	on   bool
}

// nextSwitch finds the first position in (from, to] where a room's
// resolved state turns its ledger on or off, from the rooms engine's
// changes of the StateType state (so a toggle on a fork that lost the
// state resolution switches nothing, and a resolution that drops or
// replaces the room's toggle does). It returns nil when there is none.
func (l *Log) nextSwitch(ctx context.Context, from, to int64) (*ledgerSwitch, error) {
	if l.opts.States == nil {
		return nil, nil
	}
	changes, err := l.opts.States.StateChanges(ctx, StateType, "", from, to)
	if err != nil {
		return nil, err
	}
	on, err := l.toggleContents(ctx, changes)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		was, err := l.roomEnabled(ctx, string(c.RoomID))
		if err != nil {
			return nil, err
		}
		if now := on[c.EventID]; now != was {
			return &ledgerSwitch{pos: c.Pos, room: string(c.RoomID), on: now}, nil
		}
	}
	return nil, nil
}

// toggleContents reads the StateType events the changes name and reports,
// for each, whether its content turns the ledger on.
func (l *Log) toggleContents(ctx context.Context, changes []rooms.StateChange) (map[id.EventID]bool, error) {
	var ids []id.EventID
	for _, c := range changes {
		if c.EventID != "" {
			ids = append(ids, c.EventID)
		}
	}
	on := make(map[id.EventID]bool, len(ids))
	if len(ids) == 0 {
		return on, nil
	}
	evs, err := l.opts.States.Events(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read the ledger's state events: %w", err)
	}
	for _, ev := range evs {
		on[ev.ID] = gjson.GetBytes(ev.JSON, "content.enabled").Type == gjson.True
	}
	return on, nil
}

// roomEnabled reports whether the follower has the room's ledger on.
func (l *Log) roomEnabled(ctx context.Context, roomID string) (bool, error) {
	enabled, err := l.enabled.Get(ctx)
	return enabled[id.RoomID(roomID)], err
}

// scan reads, in order, the events after pos up to end that the log must
// hold: those of ledger rooms (of every room with All), and the one at
// sw's position. full reports that it stopped at a batch's end before
// end; last is the position it read up to. Without States it reads
// nothing.
func (l *Log) scan(ctx context.Context, pos, end int64, sw *ledgerSwitch) (entries []Entry, last int64, full bool, err error) {
	if l.opts.States == nil {
		return nil, end, false, nil
	}
	var filter rooms.EventFilter
	var enabled map[id.RoomID]bool
	if !l.opts.All {
		if enabled, err = l.enabled.Get(ctx); err != nil {
			return nil, 0, false, err
		}
		filter.Rooms = func(r id.RoomID) bool { return enabled[r] || (sw != nil && string(r) == sw.room) }
	}
	evs, through, err := l.opts.States.CommittedEvents(ctx, pos, end, filter, batchSize)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read events for the ledger: %w", err)
	}
	for _, ev := range evs {
		if filter.Rooms != nil && !enabled[ev.RoomID] && (sw == nil || ev.Pos != sw.pos) {
			continue // the switching room's events before its switch
		}
		entries = append(entries, Entry{RoomID: string(ev.RoomID), EventID: string(ev.ID),
			ContentHash: gjson.GetBytes(ev.JSON, "hashes.sha256").String()})
	}
	return entries, through, through < end, nil
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
