package node_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestProfileChangeIsNotANewJoin: a display name change is a join event,
// but the member must not get the room's full state again.
func TestProfileChangeIsNotANewJoin(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice := n.Register("alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := alice.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.SetDisplayName(ctx, "Alice A."); err != nil {
		t.Fatal(err)
	}
	s2, err := alice.SyncRequest(ctx, 0, s1.NextBatch, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	jr := s2.Rooms.Join[room.RoomID]
	if jr == nil || len(jr.Timeline.Events) != 1 {
		t.Fatalf("want the member event in the timeline, got %+v", jr)
	}
	if len(jr.State.Events) != 0 {
		t.Fatalf("profile change resent %d state events", len(jr.State.Events))
	}
}

// TestSyncCatchUpAfterRestart: a client that synced before a restart
// continues with its token and gets exactly what it missed.
func TestSyncCatchUpAfterRestart(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		s1, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		n2 := n.Restart()
		alice.HomeserverURL = mustURL(t, n2.URL)
		bob.HomeserverURL = mustURL(t, n2.URL)
		sent, err := alice.SendText(ctx, room, "while you were away")
		if err != nil {
			t.Fatal(err)
		}
		s2, err := bob.SyncRequest(ctx, 1000, s1.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		evs := s2.Rooms.Join[room].Timeline.Events
		if len(evs) != 1 || evs[0].ID != sent.EventID {
			t.Fatalf("catch-up after restart: %d events", len(evs))
		}
	})
}

// TestInitialStateBeatsPreset: a state event given in initial_state replaces
// the preset's, rather than following it as a second event.
func TestInitialStateBeatsPreset(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice := n.Register("alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", InitialState: []*event.Event{{
		Type: event.StateGuestAccess, StateKey: ptr(""), Content: event.Content{Raw: map[string]any{"guest_access": "forbidden"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatal(err)
	}
	n2 := 0
	for _, ev := range msgs.Chunk {
		if ev.Type.Type == event.StateGuestAccess.Type {
			n2++
		}
	}
	if n2 != 1 {
		t.Fatalf("%d m.room.guest_access events, want 1", n2)
	}
}
