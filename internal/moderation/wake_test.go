package moderation

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestOnEventWakesOnlyForWatchedRooms: an event wakes the follower only
// when it is a configuration or its room is watched; an event of any
// other room asks for no round and notes no arrival.
func TestOnEventWakesOnlyForWatchedRooms(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The one watched room, as if read from moderation_watch.
	s := &Service{watched: follower.NewRoomSet(db, "SELECT '!watched:test'"), arrived: map[int64]int64{}}
	s.follower = follower.New("moderation", followInterval, nil, s.Step)
	if _, err := s.watched.Get(ctx); err != nil {
		t.Fatal(err)
	}
	sk := ""
	for _, tc := range []struct {
		name string
		ev   *rooms.Event
		wake bool
	}{
		{"unwatched room", &rooms.Event{RoomID: "!other:test", Type: "m.room.message", Pos: 3}, false},
		{"backfilled event", &rooms.Event{RoomID: "!watched:test", Type: "m.room.message", Pos: -3}, false},
		{"watched room", &rooms.Event{RoomID: "!watched:test", Type: "m.room.message", Pos: 4}, true},
		{"a configuration", &rooms.Event{RoomID: "!other:test", Type: ConfigType, StateKey: &sk, Pos: 5}, true},
	} {
		before := s.follower.Woken()
		s.OnEvent(tc.ev, nil)
		if woke := s.follower.Woken() > before; woke != tc.wake {
			t.Errorf("%s: woke %v, want %v", tc.name, woke, tc.wake)
		}
	}
	if _, ok := s.arrived[3]; ok {
		t.Error("an unwatched room's message noted as arrived")
	}
	if _, ok := s.arrived[4]; !ok {
		t.Error("a watched room's message not noted as arrived")
	}
}
