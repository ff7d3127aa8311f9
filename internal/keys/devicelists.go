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
//     sharing a room with user in it, users whose master key user signed
//     in it, and user itself when it joined a room in it (its other
//     devices then learn that new servers may ask for its keys);
//   - left: users whose membership changed in a room of user's during the
//     window and who now share no room with user.
//
// Membership changes are read from the member events of the window.
// Reporting a user who did not really start or stop sharing is
// harmless (clients re-query or stop tracking), missing one is not, so the
// computation errs on the side of reporting.
func (s *Service) deviceLists(ctx context.Context, user id.UserID, since, to int64) (changed, left []id.UserID, err error) {
	if since >= to {
		return nil, nil, nil
	}
	mine := s.activeRooms(user)
	changedSet := map[id.UserID]bool{}
	leftSet := map[id.UserID]bool{}

	var candidates []id.UserID
	if s.lastDeviceChange.Load() > since {
		rows, err := s.db.Query(ctx, `SELECT DISTINCT user_id FROM e2e_device_changes
			WHERE pos > $1 AND pos <= $2 AND (viewer = '' OR viewer = $3)`, since, to, user)
		if err != nil {
			return nil, nil, fmt.Errorf("load device list changes: %w", err)
		}
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
	}
	for _, u := range candidates {
		if u == user || s.sharesRoom(mine, u) {
			changedSet[u] = true
		}
	}

	memberChanged, joined, err := s.membershipChanges(ctx, user, mine, since, to)
	if err != nil {
		return nil, nil, err
	}
	if joined {
		changedSet[user] = true
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
// (since, to] in a room where user is (mine: the rooms where user is joined
// or invited) or was, in that window, a member, and every current member of
// the rooms where user's own membership changed; joined reports whether
// user is now joined to one of those. It reads the rooms package's tables
// (never writes them): the user's memberships index, and the member events
// of the window.
func (s *Service) membershipChanges(ctx context.Context, user id.UserID, mine map[id.RoomID]bool, since, to int64) (out map[id.UserID]bool, joined bool, err error) {
	own := map[id.RoomID]bool{}
	if s.rooms.MembershipPos(user) > since {
		rows, err := s.db.Query(ctx, "SELECT room_id FROM memberships WHERE user_id = $1 AND pos > $2 AND pos <= $3", user, since, to)
		if err != nil {
			return nil, false, fmt.Errorf("load own membership changes: %w", err)
		}
		for rows.Next() {
			var r id.RoomID
			if err := rows.Scan(&r); err != nil {
				rows.Close()
				return nil, false, err
			}
			own[r] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, err
		}
	}
	out = map[id.UserID]bool{}
	current := s.rooms.Memberships(user)
	for roomID := range own {
		joined = joined || current[roomID] == "join"
		if err := s.roomMembershipChanges(ctx, user, roomID, true, since, to, out); err != nil {
			return nil, false, err
		}
	}
	for roomID := range mine {
		if own[roomID] || s.rooms.LastMemberPos(ctx, roomID) <= since {
			continue
		}
		if err := s.roomMembershipChanges(ctx, user, roomID, false, since, to, out); err != nil {
			return nil, false, err
		}
	}
	return out, joined, nil
}

// roomMembershipChanges adds to out the users whose membership changed in
// the room in (since, to] and, when user's own did (self), the room's
// current members.
func (s *Service) roomMembershipChanges(ctx context.Context, user id.UserID, roomID id.RoomID, self bool, since, to int64, out map[id.UserID]bool) error {
	rows, err := s.db.Query(ctx, `SELECT state_key FROM events
		WHERE room_id = $1 AND type = 'm.room.member' AND pos > $2 AND pos <= $3`, roomID, since, to)
	if err != nil {
		return fmt.Errorf("load membership events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return err
		}
		out[u] = true
		self = self || u == user
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	if !self {
		return nil
	}
	return s.activeMembers(ctx, roomID, func(u id.UserID) { out[u] = true })
}
