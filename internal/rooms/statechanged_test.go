package rooms

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
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

// TestStateAtPosFromMemory: the state as of every position of a room with
// state changes among its messages is the state of the snapshot at that
// position, whether StateAtPos takes it from memory (no change after the
// position) or from the snapshot, in memory and after a restart.
func TestStateAtPosFromMemory(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	roomID, _ := createTestRoom(t, env.e, id.RoomV11)
	first := env.db.Visible()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 30 {
		p := textProto(alice, "message "+strconv.Itoa(i))
		if rng.IntN(3) == 0 {
			p = stateProto(alice, "m.room.topic", "", `{"topic":"topic `+strconv.Itoa(i)+`"}`)
		}
		if _, err := env.e.Send(ctx, roomID, p); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		for pos := first; pos <= env.db.Visible(); pos++ {
			got, err := env.e.StateAtPos(ctx, roomID, pos)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := env.e.SnapshotAtPos(ctx, roomID, pos)
			if err != nil {
				t.Fatal(err)
			}
			want, err := env.e.StateAt(ctx, snap)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want, func(a, b *Event) bool { return a.ID == b.ID }) {
				t.Errorf("%s: state at %d (changed after: %v) differs from its snapshot %d's", when, pos, env.e.StateChangedAfter(ctx, roomID, pos), snap)
			}
		}
	}
	check("in memory")
	env.reopen()
	check("after a restart")
}
