package contracts

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestOnEventWakesOnlyForAttachedRooms: an event wakes the follower only
// when it is an attachment or its room has one; an event of any other
// room asks for no round.
func TestOnEventWakesOnlyForAttachedRooms(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The one room with an attachment, as if read from contract_attachments.
	s := &Service{attached: follower.NewRoomSet(db, "SELECT '!with:test'")}
	s.follower = follower.New("contracts", followInterval, nil, s.Step)
	if _, err := s.attached.Get(ctx); err != nil {
		t.Fatal(err)
	}
	sk := "poll"
	for _, tc := range []struct {
		name string
		ev   *rooms.Event
		wake bool
	}{
		{"room without an attachment", &rooms.Event{RoomID: "!other:test", Type: "m.room.message", Pos: 3}, false},
		{"backfilled event", &rooms.Event{RoomID: "!with:test", Type: "m.room.message", Pos: -3}, false},
		{"room with an attachment", &rooms.Event{RoomID: "!with:test", Type: "m.room.message", Pos: 4}, true},
		{"an attachment", &rooms.Event{RoomID: "!other:test", Type: StateType, StateKey: &sk, Pos: 5}, true},
	} {
		before := s.follower.Woken()
		s.OnEvent(tc.ev, nil)
		if woke := s.follower.Woken() > before; woke != tc.wake {
			t.Errorf("%s: woke %v, want %v", tc.name, woke, tc.wake)
		}
	}
	s.attached.Forget()
	s.OnEvent(&rooms.Event{RoomID: "!other:test", Type: "m.room.message", Pos: 6}, nil)
	if s.follower.Woken() != 2+1 {
		t.Error("an event after the rooms were forgotten woke no round")
	}
}
