package rooms

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestStateChangedAfter: a room's state is unchanged after a position when
// only messages followed it, changed when a state event did, the same
// after a restart; and wherever it says unchanged, the snapshot at the
// position is the current one.
func TestStateChangedAfter(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	roomID, _ := createTestRoom(t, env.e, id.RoomV11)
	created := env.db.Visible()
	msg, err := env.e.Send(ctx, roomID, textProto(alice, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := env.e.Send(ctx, roomID, stateProto(alice, "m.room.topic", "", `{"topic":"news"}`))
	if err != nil {
		t.Fatal(err)
	}
	last, err := env.e.Send(ctx, roomID, textProto(bob, "read it"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		now, err := env.e.SnapshotAtPos(ctx, roomID, env.db.Visible())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			pos  int64
			want bool
		}{
			{"the room's creation", created, true},
			{"a message before the topic", msg.Pos, true},
			{"the topic", topic.Pos, false},
			{"a message after the topic", last.Pos, false},
		} {
			if got := env.e.StateChangedAfter(ctx, roomID, c.pos); got != c.want {
				t.Errorf("%s: state changed after %s = %v, want %v", when, c.name, got, c.want)
			}
			snap, err := env.e.SnapshotAtPos(ctx, roomID, c.pos)
			if err != nil {
				t.Fatal(err)
			}
			if !c.want && snap != now {
				t.Errorf("%s: unchanged after %s, yet its snapshot %d is not the current %d", when, c.name, snap, now)
			}
		}
	}
	check("in memory")
	env.reopen()
	check("after a restart")
}
