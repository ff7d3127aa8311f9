package rooms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	"maunium.net/go/mautrix/id"
)

// StateAtPos returns the room's state as of stream position pos (the state
// after every event at or before it); math.MaxInt64 means the current state.
// Where the state has not changed after pos (the usual case for a recent
// position) it is the current state, from memory: a first sliding sync
// response reads it for each of the user's rooms.
func (e *Engine) StateAtPos(ctx context.Context, roomID id.RoomID, pos int64) ([]*Event, error) {
	if pos == math.MaxInt64 {
		return e.CurrentState(ctx, roomID)
	}
	if !e.StateChangedAfter(ctx, roomID, pos) {
		// Checked again after the read: a change committed in between
		// would have made the state read newer than pos.
		cur, err := e.CurrentState(ctx, roomID)
		if err == nil && !e.StateChangedAfter(ctx, roomID, pos) {
			return cur, nil
		}
	}
	snap, err := e.SnapshotAtPos(ctx, roomID, pos)
	if err != nil {
		return nil, err
	}
	return e.StateAt(ctx, snap)
}

// snapshotAtPosQuery finds the room's last state snapshot at or before a
// position. Every change of the room's current state starts a snapshot
// whose ID is a position (the state event's, or one taken for a state
// resolution just before the event that caused it); snapshots of fork
// states are left out. So this is one descent of the state_snapshots_room
// index, however many messages follow the last state change.
const snapshotAtPosQuery = `SELECT MAX(snapshot_id) FROM state_snapshots WHERE room_id = $1 AND fork = FALSE AND snapshot_id <= $2`

// SnapshotAtPos returns the room's state snapshot as of stream position pos
// (the state after every event at or before pos).
func (e *Engine) SnapshotAtPos(ctx context.Context, roomID id.RoomID, pos int64) (int64, error) {
	var snap sql.NullInt64
	if err := e.db.QueryRow(ctx, snapshotAtPosQuery, roomID, pos).Scan(&snap); err != nil {
		return 0, fmt.Errorf("snapshot at position: %w", err)
	}
	return snap.Int64, nil
}

// StateChange says that from stream position Pos on, the current state of
// room RoomID holds EventID under one (type, state key); an empty EventID
// says that the key is not in the state.
type StateChange struct {
	Pos     int64
	RoomID  id.RoomID
	EventID id.EventID
}

// stateChangesQuery reads the current-state snapshots (not those of forks)
// with positions in ($1, $2], each with its entry for the key ($3, $4) if
// it has one, its parent and the room's current-state snapshot before it.
const stateChangesQuery = `SELECT s.snapshot_id, s.room_id, COALESCE(x.event_id, ''), s.parent_id,
		COALESCE((SELECT MAX(p.snapshot_id) FROM state_snapshots p
			WHERE p.room_id = s.room_id AND p.fork = FALSE AND p.snapshot_id < s.snapshot_id), 0)
	FROM state_snapshots s
	LEFT JOIN state_snapshot_entries x ON x.snapshot_id = s.snapshot_id AND x.type = $3 AND x.state_key = $4
	WHERE s.snapshot_id > $1 AND s.snapshot_id <= $2 AND s.fork = FALSE
	ORDER BY s.snapshot_id`

// StateChanges returns, in position order, where the (evType, sk)
// of the rooms' current state may have changed at stream positions in
// (from, to]: by a state event, or by a state resolution that took another
// event for it or dropped it. A change that leaves a room's value as it
// was may be reported too (a full snapshot repeats every key), so callers
// compare with the value they know. Events on a fork that lost the
// resolution are not reported: the room's state never held them.
func (e *Engine) StateChanges(ctx context.Context, evType, sk string, from, to int64) ([]StateChange, error) {
	type candidate struct {
		change       StateChange
		parent, prev int64
	}
	var cands []candidate
	err := func() error {
		rows, err := e.db.Query(ctx, stateChangesQuery, from, to, evType, sk)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c candidate
			if err := rows.Scan(&c.change.Pos, &c.change.RoomID, &c.change.EventID, &c.parent, &c.prev); err != nil {
				return err
			}
			cands = append(cands, c)
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("read state changes of %s: %w", evType, err)
	}
	var out []StateChange
	for _, c := range cands {
		switch {
		case c.change.EventID != "" || c.parent == 0:
			// The snapshot names the key's event, or is full and
			// lacks it.
		case c.parent == c.prev:
			continue // a delta on the room's previous state that leaves the key alone
		default:
			// A delta on another snapshot (the state before a
			// resolution's winning event, on its own branch).
			if c.change.EventID, err = e.stateKeyAt(ctx, c.parent, evType, sk); err != nil {
				return nil, err
			}
		}
		out = append(out, c.change)
	}
	return out, nil
}

// stateKeyAt returns the event that snapshot snap holds for (evType, sk),
// or "", walking up its delta chain.
func (e *Engine) stateKeyAt(ctx context.Context, snap int64, evType, sk string) (id.EventID, error) {
	for cur := snap; cur != 0; {
		if st, ok := e.snaps.get(cur); ok {
			return st.state[stateKey{evType, sk}], nil
		}
		var eid string
		err := e.db.QueryRow(ctx, "SELECT event_id FROM state_snapshot_entries WHERE snapshot_id = $1 AND type = $2 AND state_key = $3",
			cur, evType, sk).Scan(&eid)
		switch {
		case err == nil:
			return id.EventID(eid), nil
		case !errors.Is(err, sql.ErrNoRows):
			return "", fmt.Errorf("read snapshot %d: %w", cur, err)
		}
		if err := e.db.QueryRow(ctx, "SELECT parent_id FROM state_snapshots WHERE snapshot_id = $1", cur).Scan(&cur); err != nil {
			return "", fmt.Errorf("read snapshot %d: %w", cur, err)
		}
	}
	return "", nil
}
