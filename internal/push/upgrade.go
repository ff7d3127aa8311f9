package push

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// errNothingToCopy stops a rule update that turns out to change nothing.
var errNothingToCopy = errors.New("no push rule to copy")

// CopyRulesOnUpgrade is a rooms.Engine OnEvent hook. When a local user joins
// a room whose create event names a predecessor (an upgraded room, by
// /upgrade or by hand), the user's room rule for the predecessor is copied
// to the new room, with its actions and enabled flag, unless the user has a
// rule for the new room already. So a room muted before its upgrade stays
// muted after, as on Synapse; Complement's TestPushRuleRoomUpgrade checks it.
func (s *Service) CopyRulesOnUpgrade(ev *rooms.Event, info *rooms.RoomInfo) {
	if ev.Rejected || ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() != "join" {
		return
	}
	user := id.UserID(*ev.StateKey)
	if user.Homeserver() != s.rooms.ServerName() {
		return
	}
	old := predecessor(info)
	if old == "" || !needsCopy(s.rulesOf(user), old, info.ID) {
		return
	}
	ctx := context.Background()
	joined, err := s.wasJoined(ctx, ev, user)
	if err != nil {
		s.log.Error("copy push rules to upgraded room", "room_id", info.ID, "user_id", user, "err", err)
		return
	}
	if joined {
		return // a profile change, not a join
	}
	err = s.update(ctx, user, func(u *userRules) (func(context.Context, *storage.Tx) error, error) {
		if !needsCopy(u, old, info.ID) {
			return nil, errNothingToCopy
		}
		list := u.custom[Room]
		at := slices.IndexFunc(list, func(r *Rule) bool { return r.RuleID == string(old) })
		rule := list[at].clone()
		rule.RuleID = string(info.ID)
		list = slices.Insert(slices.Clone(list), at, rule)
		u.custom[Room] = list
		return func(ctx context.Context, tx *storage.Tx) error { return writeKind(ctx, tx, user, Room, list) }, nil
	})
	if err != nil && !errors.Is(err, errNothingToCopy) {
		s.log.Error("copy push rules to upgraded room", "room_id", info.ID, "user_id", user, "err", err)
	}
}

// predecessor returns the room that the room of info replaces, from its
// create event, or "".
func predecessor(info *rooms.RoomInfo) id.RoomID {
	create := info.StateEvent("m.room.create", "")
	if create == nil {
		return ""
	}
	var c struct {
		Predecessor *struct {
			RoomID id.RoomID `json:"room_id"`
		} `json:"predecessor"`
	}
	if json.Unmarshal(create.Content(), &c) != nil || c.Predecessor == nil {
		return ""
	}
	return c.Predecessor.RoomID
}

// needsCopy reports whether u has a room rule for old and none for room.
func needsCopy(u *userRules, old, room id.RoomID) bool {
	list := u.custom[Room]
	has := func(r id.RoomID) bool {
		return slices.ContainsFunc(list, func(rule *Rule) bool { return rule.RuleID == string(r) })
	}
	return has(old) && !has(room)
}

// wasJoined reports whether user was joined to the room just before ev.
func (s *Service) wasJoined(ctx context.Context, ev *rooms.Event, user id.UserID) (bool, error) {
	before, err := s.rooms.StateAt(ctx, ev.SnapshotBefore)
	if err != nil {
		return false, err
	}
	for _, st := range before {
		if st.Type == "m.room.member" && st.StateKey != nil && *st.StateKey == string(user) {
			return st.Membership() == "join", nil
		}
	}
	return false, nil
}
