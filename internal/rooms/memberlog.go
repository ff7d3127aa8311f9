package rooms

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// MemberChange is one committed change of a user's membership in a room
// this node is in, at its stream position.
type MemberChange struct {
	Pos    int64
	RoomID id.RoomID
	UserID id.UserID
}

// maxMemberLog bounds the membership changes kept in memory; windows
// reaching before the oldest read the database.
const maxMemberLog = 20_000

// MemberChanges returns the membership changes committed in (since, to]
// in rooms this node is in, oldest first: the users whose membership a
// member event or a state resolution changed in the room's current state.
// Recent windows come from memory without a query; older ones are read
// from the member events of the window (the durable record), which may
// name a few more users (member events that changed no current state).
// Invites and knocks of rooms the node is not in are not included.
func (e *Engine) MemberChanges(ctx context.Context, since, to int64) ([]MemberChange, error) {
	if since >= to {
		return nil, nil
	}
	out, ok := e.memberLog.Window(since, to)
	if ok {
		return out, nil
	}
	rows, err := e.db.Query(ctx, `SELECT pos, room_id, state_key FROM events
		WHERE pos > $1 AND pos <= $2 AND type = 'm.room.member' ORDER BY pos`, since, to)
	if err != nil {
		return nil, fmt.Errorf("load membership changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c MemberChange
		if err := rows.Scan(&c.Pos, &c.RoomID, &c.UserID); err != nil {
			return nil, fmt.Errorf("load membership changes: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load membership changes: %w", err)
	}
	return out, nil
}

// SharesRoom reports whether a and b are each joined to or invited in one
// same room, from the membership index in memory.
func (e *Engine) SharesRoom(a, b id.UserID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ra, rb := e.members[a], e.members[b]
	if len(rb) < len(ra) {
		ra, rb = rb, ra
	}
	for r, m := range ra {
		if activeMembership(m) && activeMembership(rb[r]) {
			return true
		}
	}
	return false
}

// activeMembership reports whether a membership shares the room's events
// and members: joined or invited.
func activeMembership(m string) bool { return m == "join" || m == "invite" }
