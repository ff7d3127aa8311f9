package push

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// TestRosterKeptBetweenEvents checks that the members of a room are read
// once for the events of an unchanged room (their ignore lists asked for
// once, not once per event), and again once anyone's ignore list, anyone's
// rules or the room's members changed, each change reaching the next
// event's outcome.
func TestRosterKeptBetweenEvents(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir()+"/db")
	defer db.Close()
	s := New(db, nil, nil, &fakeRooms{}, Options{})
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	const members = 50
	var users []id.UserID
	var evs []*rooms.Event
	for i := range members {
		u := id.UserID(fmt.Sprintf("@m%d:hs", i))
		users = append(users, u)
		m := mkEvent("m.room.member", u, ptr(string(u)), `{"membership":"join"}`)
		m.ID = id.EventID("$join-" + string(u))
		evs = append(evs, m)
	}
	sender, ignorer := users[0], users[1]
	var version uint64
	reads := 0
	ignored := map[id.UserID]map[id.UserID]bool{}
	s.IgnoredUsers = func(_ context.Context, u id.UserID) (map[id.UserID]bool, error) {
		reads++
		return ignored[u], nil
	}
	s.IgnoreListsVersion = func() uint64 { return version }
	info := rooms.InfoWithState(testRoom, id.RoomV11, evs)
	msg := mkEvent("m.room.message", sender, nil, `{"msgtype":"m.text","body":"hi"}`)
	step := func(name string, info *rooms.RoomInfo, wantReads, wantNotified int) {
		t.Helper()
		reads = 0
		o := s.outcome(ctx, msg, info)
		if o == nil {
			t.Fatalf("%s: no outcome", name)
		}
		if reads != wantReads || len(o.hits) != wantNotified {
			t.Errorf("%s: %d ignore lists read and %d notified, want %d and %d", name, reads, len(o.hits), wantReads, wantNotified)
		}
	}
	step("first event", info, members, members-1)
	step("second event", info, 0, members-1)

	ignored[ignorer] = map[id.UserID]bool{sender: true}
	version++
	step("after an ignore", info, members, members-2)
	step("the event after", info, 0, members-2)

	if err := s.PutRule(ctx, users[2], Override, "mute", NewRule{Actions: rawList(), Conditions: rawList()}); err != nil {
		t.Fatal(err)
	}
	step("after a muting rule", info, members, members-3)

	left := mkEvent("m.room.member", users[3], ptr(string(users[3])), `{"membership":"leave"}`)
	left.ID = "$leave"
	step("after a leave", rooms.InfoWithState(testRoom, id.RoomV11, append(evs[:3:3], append([]*rooms.Event{left}, evs[4:]...)...)), members-1, members-4)
}
