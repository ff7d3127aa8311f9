package keys

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"
)

// deviceLists computes the device_lists of a sync from since to to (both
// stream positions) for user:
//
//   - changed: users sharing a room with user (or user itself) whose
//     devices or cross-signing keys changed in the window, users who began
//     sharing a room with user in it, and users whose master key user
//     signed in it;
//   - left: users whose membership changed in a room of user's during the
//     window and who now share no room with user.
//
// Membership changes are read from the rooms' memberships index (the
// latest change of each member); a change after to is reported by the
// next sync. Reporting a user who did not really start or stop sharing is
// harmless (clients re-query or stop tracking), missing one is not, so the
// computation errs on the side of reporting.
func (s *Service) deviceLists(ctx context.Context, user id.UserID, since, to int64) (changed, left []id.UserID, err error) {
	if since >= to {
		return nil, nil, nil
	}
	mine := s.activeRooms(user)
	changedSet := map[id.UserID]bool{}
	leftSet := map[id.UserID]bool{}

	rows, err := s.db.Query(ctx, `SELECT DISTINCT user_id FROM e2e_device_changes
		WHERE pos > $1 AND pos <= $2 AND (viewer = '' OR viewer = $3)`, since, to, user)
	if err != nil {
		return nil, nil, fmt.Errorf("load device list changes: %w", err)
	}
	var candidates []id.UserID
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, nil, err
		}
		candidates = append(candidates, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for _, u := range candidates {
		if u == user || s.sharesRoom(mine, u) {
			changedSet[u] = true
		}
	}

	memberChanged, err := s.membershipChanges(ctx, user, since, to)
	if err != nil {
		return nil, nil, err
	}
	for u := range memberChanged {
		if u == user {
			continue
		}
		if s.sharesRoom(mine, u) {
			changedSet[u] = true
		} else {
			leftSet[u] = true
		}
	}
	for u := range changedSet {
		changed = append(changed, u)
	}
	for u := range leftSet {
		left = append(left, u)
	}
	slices.Sort(changed)
	slices.Sort(left)
	return changed, left, nil
}

// membershipChanges returns the users whose membership changed in
// (since, to] in a room where user has a membership; for rooms where
// user's own membership changed, every member of the room.
func (s *Service) membershipChanges(ctx context.Context, user id.UserID, since, to int64) (map[id.UserID]bool, error) {
	out := map[id.UserID]bool{}
	for roomID, m := range s.rooms.Memberships(user) {
		active := m == "join" || m == "invite"
		if s.rooms.LastPos(ctx, roomID) <= since {
			continue
		}
		// The memberships table belongs to the rooms package; it is read
		// here, never written.
		rows, err := s.db.Query(ctx, "SELECT user_id, pos FROM memberships WHERE room_id = $1", roomID)
		if err != nil {
			return nil, fmt.Errorf("load memberships: %w", err)
		}
		var all, moved []id.UserID
		self := false
		for rows.Next() {
			var u id.UserID
			var pos int64
			if err := rows.Scan(&u, &pos); err != nil {
				rows.Close()
				return nil, err
			}
			all = append(all, u)
			if pos > since && pos <= to {
				moved = append(moved, u)
				if u == user {
					self = true
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if self {
			moved = all
		} else if !active {
			continue // left before the window: nobody there is shared any more
		}
		for _, u := range moved {
			out[u] = true
		}
	}
	return out, nil
}
