package rooms

import (
	"context"
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
