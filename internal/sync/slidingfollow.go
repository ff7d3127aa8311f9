package sync

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// maxFollowedEvents is how many new events of the user's rooms a response
// follows its predecessor's room list through; past that it builds the
// list again.
const maxFollowedEvents = 256

// followedList is what a response's room list was built from and what
// came of it, kept with the connection's state so that the next response
// can follow the list from the events since (a room moved by a new
// message) rather than build it again from the user's memberships and
// every room's bump stamp. Nothing in it is written once stored.
type followedList struct {
	// list is the room list, newest activity first.
	list []listRoom
	// rows are the engine's membership rows of the user the list came
	// from: the same rows (the engine keeps them until a membership of
	// the user changes) mean the same rooms and memberships.
	rows []rooms.MembershipRow
	// rooms is the set of the list's rooms.
	rooms map[id.RoomID]bool
	// invites says that the rows have an invite, whose visibility (the
	// user's ignored users, their invite permission config) may change
	// without a membership change: such lists are built again each time.
	invites bool
	// ignored and direct are the user's ignored users and direct rooms
	// the response was built with.
	ignored map[id.UserID]bool
	direct  map[id.RoomID]bool
	// request is the canonical form of the lists and room subscriptions
	// the response matched, and keyed whether it has one: not when they
	// use a filter whose outcome may change without a new event of the
	// room (tags, spaces, encryption). A request with neither lists nor
	// subscriptions has an empty one, so keyed tells it apart.
	request string
	keyed   bool
	// configs are the rooms' combined configs, shared the configs made
	// for each selection, joined the joined rooms with a config (list
	// order) and windowJoined the same as a set.
	configs      map[id.RoomID]*combinedConfig
	shared       map[configStep]*combinedConfig
	joined       []id.RoomID
	windowJoined map[id.RoomID]bool
}

// sameRows reports whether a and b are the same rows of the engine (not
// merely equal ones).
func sameRows(a, b []rooms.MembershipRow) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// compareListRooms orders the room list: newest bump first, then by room ID.
func compareListRooms(a, c listRoom) int {
	return cmp.Or(cmp.Compare(c.bump, a.bump), cmp.Compare(a.room, c.room))
}

// followList returns the previous response's room list moved on to this
// response's position when only new events can have changed it: the
// user's membership rows, ignored users and pending invites are as they
// were. Each room with a new event that changed its bump stamp moves to
// its new place; the rooms with new events are recorded in b.changed.
// ok is false when the list must be built afresh.
func (b *slidingBuild) followList(ctx context.Context, rows []rooms.MembershipRow) (list []listRoom, ok bool, err error) {
	prev := &b.prev.followed
	if b.s.slidingFromScratch.Load() || prev.list == nil || prev.invites || !sameRows(rows, prev.rows) ||
		!maps.Equal(prev.ignored, b.creq.Ignored) {
		return nil, false, nil
	}
	pick := rooms.EventFilter{Rooms: func(r id.RoomID) bool { return prev.rooms[r] }}
	evs, through, err := b.s.rooms.CommittedEvents(ctx, b.prev.token.Pos, b.creq.To.Pos, pick, maxFollowedEvents)
	if err != nil {
		return nil, false, fmt.Errorf("follow the room list: %w", err)
	}
	if through < b.creq.To.Pos {
		return nil, false, nil // too many to follow
	}
	b.changed = make(map[id.RoomID]bool, len(evs))
	for _, ev := range evs {
		b.changed[ev.RoomID] = true
	}
	list = prev.list
	cloned := false
	for roomID := range b.changed {
		i := slices.IndexFunc(list, func(lr listRoom) bool { return lr.room == roomID })
		if i < 0 || list[i].membership != "join" {
			continue // only a joined room's bump stamp follows its events
		}
		bump, err := b.s.bumpStamp(ctx, roomID, b.creq.To.Pos)
		if err != nil {
			return nil, false, err
		}
		if bump == list[i].bump {
			continue
		}
		if !cloned {
			list, cloned = slices.Clone(list), true
		}
		moved := list[i]
		moved.bump = bump
		list = slices.Delete(list, i, i+1)
		j, _ := slices.BinarySearchFunc(list, moved, compareListRooms)
		list = slices.Insert(list, j, moved)
	}
	b.next.followed.rooms = prev.rooms
	b.s.slidingFollowed.Add(1)
	return list, true, nil
}

// requestKey is the canonical form of the lists and the connection's room
// subscriptions (subs), and whether the lists' filters depend only on
// the rooms, the memberships and the user's direct rooms: the same key
// then selects the same rooms alike from the same list.
func (req *slidingRequest) requestKey(subs map[id.RoomID]*roomConfig) (string, bool) {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(req.Lists)) {
		l := req.Lists[name]
		if f := l.Filters; f != nil {
			if f.Spaces != nil || f.Tags != nil || f.NotTags != nil || f.IsEncrypted != nil {
				return "", false
			}
		}
		filters, err := json.Marshal(l.Filters)
		if err != nil {
			return "", false
		}
		ranges, _ := l.ranges() // checked with the request
		fmt.Fprintf(&b, "%q%v%d%q%s;", name, ranges, l.TimelineLimit, l.RequiredState.String(), filters)
	}
	for _, roomID := range slices.Sorted(maps.Keys(subs)) {
		sub := subs[roomID]
		fmt.Fprintf(&b, "%q%d%q;", roomID, sub.TimelineLimit, sub.RequiredState.String())
	}
	return b.String(), true
}

// windowJoined returns the joined rooms of the window as a set: the
// previous response's when they are the same rooms.
func (b *slidingBuild) windowJoined() map[id.RoomID]bool {
	if b.next.followed.windowJoined != nil {
		return b.next.followed.windowJoined
	}
	set := make(map[id.RoomID]bool, len(b.joined))
	for _, r := range b.joined {
		set[r] = true
	}
	b.next.followed.windowJoined = set
	return set
}
