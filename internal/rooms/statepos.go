package rooms

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"maunium.net/go/mautrix/id"
)

// StateAtPos returns the room's state as of stream position pos (the state
// after every event at or before it); math.MaxInt64 means the current state.
func (e *Engine) StateAtPos(ctx context.Context, roomID id.RoomID, pos int64) ([]*Event, error) {
	if pos == math.MaxInt64 {
		return e.CurrentState(ctx, roomID)
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
