package keys

import (
	"context"
	"fmt"
	"math"
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
//     devices then learn that new servers may ask for its keys). The
//     members a partial-state room's full state brought count as beginning
//     to share only when the room is encrypted: the spec names the users
//     who "now share an encrypted room", and those members joined no
//     room, this node only learnt of them;
//   - left: users whose membership changed in a room of user's during the
//     window and who now share no room with user.
//
// Device-list and membership changes of the window come from memory when
// the token is recent (a window without any costs no query and no copy),
// from the database otherwise.
// Reporting a user who did not really start or stop sharing is
// harmless (clients re-query or stop tracking), missing one is not, so the
// computation errs on the side of reporting.
func (s *Service) deviceLists(ctx context.Context, user id.UserID, since, to int64) (changed, left []id.UserID, err error) {
	if since >= to {
		return nil, nil, nil
	}
	candidates, err := s.deviceChanges(ctx, user, since, to)
	if err != nil {
		return nil, nil, err
	}
	memberChanged, joined, err := s.membershipChanges(ctx, user, since, to)
	if err != nil {
		return nil, nil, err
	}
	if len(candidates) == 0 && len(memberChanged) == 0 && !joined {
		return nil, nil, nil
	}
	changedSet := map[id.UserID]bool{}
	leftSet := map[id.UserID]bool{}
	for _, u := range candidates {
		if u == user || s.rooms.SharesRoom(user, u) {
			changedSet[u] = true
		}
	}
	if joined {
		changedSet[user] = true
	}
	for u := range memberChanged {
		if u == user {
			continue
		}
		if s.rooms.SharesRoom(user, u) {
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

// listChange is one recorded change of user's devices or cross-signing
// keys, for every user sharing a room with them (viewer "") or for viewer
// alone.
type listChange struct {
	user, viewer id.UserID
}

// maxDeviceLog bounds the device-list changes kept in memory; windows
// reaching before the oldest read the database.
const maxDeviceLog = 20_000

// deviceChanges returns the users whose device-list changes in (since,
// to] are for viewer (or for everyone), from memory when the log covers
// the window and from e2e_device_changes otherwise; a user may appear more
// than once.
func (s *Service) deviceChanges(ctx context.Context, viewer id.UserID, since, to int64) ([]id.UserID, error) {
	if s.lastDeviceChange.Load() <= since {
		return nil, nil
	}
	if changes, ok := s.deviceLog.Window(since, to); ok {
		var out []id.UserID
		for _, c := range changes {
			if c.viewer == "" || c.viewer == viewer {
				out = append(out, c.user)
			}
		}
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT DISTINCT user_id FROM e2e_device_changes
		WHERE pos > $1 AND pos <= $2 AND (viewer = '' OR viewer = $3)`, since, to, viewer)
	if err != nil {
		return nil, fmt.Errorf("load device list changes: %w", err)
	}
	defer rows.Close()
	var out []id.UserID
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("load device list changes: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load device list changes: %w", err)
	}
	return out, nil
}

// membershipChanges returns the users whose membership changed in
// (since, to] in a room where user is now joined or invited, and, for
// each room where user's own membership changed after since (joined,
// left, was invited, ...), everyone whose membership changed there in the
// window and its current members; joined reports whether user is now
// joined to one of those rooms. A change of user's own after to counts
// too: the memberships read here are the newest, so a room user left just
// after to is no longer theirs, yet the window's changes there (another
// member's leave) are still news for them. It asks the room engine for the
// changes (from memory for recent tokens), so a window without membership
// changes costs no query and no copy of the user's rooms.
func (s *Service) membershipChanges(ctx context.Context, user id.UserID, since, to int64) (out map[id.UserID]bool, joined bool, err error) {
	changes, err := s.rooms.MemberChanges(ctx, since, math.MaxInt64)
	if err != nil || len(changes) == 0 {
		return nil, false, err
	}
	var own map[id.RoomID]bool
	for _, c := range changes {
		if c.UserID == user {
			if own == nil {
				own = map[id.RoomID]bool{}
			}
			own[c.RoomID] = true
		}
	}
	for _, c := range changes {
		// In a room whose membership of user's changed, a change after to
		// counts too: its current members are read now, so one who left
		// after to is not among them, and the next window, where user's
		// own change no longer is, would not name them.
		if c.Pos > to && !own[c.RoomID] {
			continue
		}
		if c.Pos == s.rooms.StateCompletedAt(ctx, c.RoomID) && !s.encrypted(ctx, c.RoomID) {
			continue // a member the full state brought, in an unencrypted room
		}
		if own[c.RoomID] || active(s.rooms.Membership(user, c.RoomID)) {
			if out == nil {
				out = map[id.UserID]bool{}
			}
			out[c.UserID] = true
		}
	}
	for roomID := range own {
		joined = joined || s.rooms.Membership(user, roomID) == "join"
		if out == nil {
			out = map[id.UserID]bool{}
		}
		if err := s.activeMembers(ctx, roomID, func(u id.UserID) { out[u] = true }); err != nil {
			return nil, false, err
		}
	}
	return out, joined, nil
}

// encrypted reports whether the room's current state has an
// m.room.encryption event.
func (s *Service) encrypted(ctx context.Context, roomID id.RoomID) bool {
	ev, err := s.rooms.StateEvent(ctx, roomID, "m.room.encryption", "")
	return err == nil && ev != nil
}
