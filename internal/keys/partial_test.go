package keys_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/keys"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// stalledResync holds a node's partial-state resync (its /state_ids
// request) until the node stops, so that its rooms stay partial.
type stalledResync struct{ rooms.Remote }

func (stalledResync) GetStateIDs(ctx context.Context, _ string, _ id.RoomID, _ id.EventID) ([]id.EventID, []id.EventID, error) {
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// TestPartialStateDeviceListsGoOut: bob of node B joins alice's named room
// on node A with partial state (no member of A's in it) and the resync
// held; a new device of bob's still reaches A (a server the send_join
// answer named), so alice sees bob in device_lists.changed.
func TestPartialStateDeviceListsGoOut(t *testing.T) {
	ctx := context.Background()
	a, b := federatingPair(t, testnode.SQLite)
	alice, bob := a.Register("alice"), b.Register("bob")
	b.Rooms.Remote = stalledResync{b.Rooms.Remote}
	testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
	uploaded := streamOf(t, b, bob.UserID)
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "named"})
	if _, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins over federation: %v", err)
	}
	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the room is not partial on B")
	}
	if m := b.Rooms.Members(ctx, roomID)[alice.UserID]; m != "" {
		t.Fatalf("B knows alice as %q in the partial state, want her member event omitted", m)
	}
	testnode.WaitFor(t, 10*time.Second, "A knows bob's join", func() bool {
		members, err := alice.JoinedMembers(ctx, roomID)
		_, ok := members.Joined[bob.UserID]
		return err == nil && ok
	})
	waitHeld(t, a, b, bob.UserID, uploaded)
	since := testnode.SyncOnce(t, alice, "", 0).NextBatch

	bob2 := b.Login(bob.UserID)
	testnode.Call(t, bob2, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob2).deviceKeys(t)}).OK(t)
	changedUntil(t, alice, since, bob.UserID)
	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the room's state became complete on B during the test")
	}
}

// TestPartialSentBounded: the updates recorded for a partial-state room
// (kept in the database, so that a restart during the resync does not
// lose them) are bounded per room, the oldest dropped first, and other
// rooms' records are left alone. (This node has no federation, so nothing
// catches them up.)
func TestPartialSentBounded(t *testing.T) {
	ctx := context.Background()
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			n := testnode.Start(t, engine)
			const room, other = id.RoomID("!partial:example.org"), id.RoomID("!other:example.org")
			const total = keys.MaxPartialSent + 10
			for i := range total {
				if err := n.Keys.NotePartialSent(ctx, room, "@bob:example.org", "DEV", int64(i+1), []string{"a.example", "b.example"}); err != nil {
					t.Fatalf("note %d: %v", i, err)
				}
			}
			if err := n.Keys.NotePartialSent(ctx, other, "@bob:example.org", "DEV", 1, nil); err != nil {
				t.Fatalf("note in the other room: %v", err)
			}
			ids, servers, err := n.Keys.PartialSent(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != keys.MaxPartialSent || ids[0] != total-keys.MaxPartialSent+1 || ids[len(ids)-1] != total {
				t.Fatalf("kept %d updates, %v..%v; want the newest %d", len(ids), ids[:1], ids[len(ids)-1:], keys.MaxPartialSent)
			}
			if !slices.Equal(servers[0], []string{"a.example", "b.example"}) {
				t.Fatalf("servers read back %v", servers[0])
			}
			if ids, _, err := n.Keys.PartialSent(ctx, other); err != nil || len(ids) != 1 {
				t.Fatalf("the other room's records: %v, %v", ids, err)
			}
		})
	}
}
