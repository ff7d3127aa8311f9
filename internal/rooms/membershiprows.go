package rooms

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// MembershipRow is one room of a user's, as the memberships table has it:
// the user's membership there, the event that set it and its position,
// and whether the user forgot the room.
type MembershipRow struct {
	RoomID     id.RoomID
	Membership string
	EventID    id.EventID
	Pos        int64
	Forgotten  bool
}

// membershipRows caches each user's rows of the memberships table, which
// every /sync reads: an entry holds while the user's latest membership
// change (memberPos) and forget count are those it was read at.
type membershipRows struct {
	users   map[id.UserID]cachedRows
	forgets map[id.UserID]int64 // Forget calls, by user
	purges  int64               // purged rooms
}

type cachedRows struct {
	rows      []MembershipRow
	memberPos int64
	forgets   int64
	purges    int64
}

// maxCachedMembershipUsers bounds the cache; it starts afresh when full.
const maxCachedMembershipUsers = 100_000

// UserMemberships returns the user's rows of the memberships table, every
// room the user has a membership in (left and forgotten ones included).
// The result is shared: callers must not modify it.
func (e *Engine) UserMemberships(ctx context.Context, user id.UserID) ([]MembershipRow, error) {
	// The key is read before the rows: a change that commits meanwhile
	// moves it on, so the next call reads again. memberPos moves only once
	// its change has committed, so rows read after it include that change.
	e.mu.Lock()
	key := cachedRows{memberPos: e.memberPos[user], forgets: e.memberRows.forgets[user], purges: e.memberRows.purges}
	c, ok := e.memberRows.users[user]
	e.mu.Unlock()
	if ok && c.memberPos == key.memberPos && c.forgets == key.forgets && c.purges == key.purges {
		return c.rows, nil
	}
	rows, err := e.db.Query(ctx, "SELECT room_id, membership, event_id, pos, forgotten FROM memberships WHERE user_id = $1", user)
	if err != nil {
		return nil, fmt.Errorf("load memberships: %w", err)
	}
	defer rows.Close()
	var out []MembershipRow
	for rows.Next() {
		var m MembershipRow
		if err := rows.Scan(&m.RoomID, &m.Membership, &m.EventID, &m.Pos, &m.Forgotten); err != nil {
			return nil, fmt.Errorf("load memberships: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load memberships: %w", err)
	}
	key.rows = out
	e.mu.Lock()
	if e.memberRows.users == nil || len(e.memberRows.users) >= maxCachedMembershipUsers {
		e.memberRows.users = map[id.UserID]cachedRows{}
	}
	e.memberRows.users[user] = key
	e.mu.Unlock()
	return out, nil
}

// Forget marks the user's left or banned membership of the room forgotten
// (POST /rooms/{roomId}/forget): the room leaves the user's /sync and its
// history becomes unreadable to them. A room the user is in is left alone.
func (e *Engine) Forget(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	err := e.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2 AND membership IN ('leave', 'ban')",
			roomID, user)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget room: %w", err)
	}
	e.mu.Lock()
	if e.memberRows.forgets == nil {
		e.memberRows.forgets = map[id.UserID]int64{}
	}
	e.memberRows.forgets[user]++
	e.mu.Unlock()
	return nil
}

// purgedMemberships notes that a purge removed a room's memberships.
func (e *Engine) purgedMemberships() {
	e.mu.Lock()
	e.memberRows.purges++
	e.mu.Unlock()
}
