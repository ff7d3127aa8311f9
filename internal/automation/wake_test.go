package automation

import (
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
)

// TestOnEventWakesOnlyForRuledRooms: an event wakes the follower only
// when scan would read it (a rule change, the automation user's
// membership, an event of a room with a rule); an event of any other room
// asks for no round.
func TestOnEventWakesOnlyForRuledRooms(t *testing.T) {
	s := &Service{opts: Options{Accounts: accounts.New(nil, nil, accounts.Options{ServerName: "test"})},
		rules: map[id.RoomID]map[string]*storedRule{"!ruled:test": {"x": &storedRule{}}}}
	s.follower = follower.New("automation", followInterval, nil, s.Step)
	bot, alice, name := string(s.Bot()), "@alice:test", "greet"
	for _, tc := range []struct {
		name string
		ev   *rooms.Event
		wake bool
	}{
		{"room without rules", &rooms.Event{RoomID: "!other:test", Type: "m.room.message", Pos: 3}, false},
		{"another user's membership", &rooms.Event{RoomID: "!other:test", Type: "m.room.member", StateKey: &alice, Pos: 4}, false},
		{"backfilled event", &rooms.Event{RoomID: "!ruled:test", Type: "m.room.message", Pos: -3}, false},
		{"room with a rule", &rooms.Event{RoomID: "!ruled:test", Type: "m.room.message", Pos: 5}, true},
		{"a rule", &rooms.Event{RoomID: "!other:test", Type: StateType, StateKey: &name, Pos: 6}, true},
		{"the automation user's invite", &rooms.Event{RoomID: "!other:test", Type: "m.room.member", StateKey: &bot, Pos: 7}, true},
	} {
		before := s.follower.Woken()
		s.OnEvent(tc.ev, nil)
		if woke := s.follower.Woken() > before; woke != tc.wake {
			t.Errorf("%s: woke %v, want %v", tc.name, woke, tc.wake)
		}
	}
}
