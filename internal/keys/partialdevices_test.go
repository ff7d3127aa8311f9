package keys_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// heldResync holds a node's partial-state resync (its /state_ids and
// /state requests) until open is closed.
type heldResync struct {
	rooms.Remote
	open chan struct{}
}

func (h heldResync) GetStateIDs(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID) ([]id.EventID, []id.EventID, error) {
	select {
	case <-h.open:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	return h.Remote.GetStateIDs(ctx, server, roomID, eventID)
}

func (h heldResync) GetState(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID, each func(bool, json.RawMessage) error) error {
	select {
	case <-h.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.Remote.GetState(ctx, server, roomID, eventID, each)
}

// TestPartialStateDeviceListUpdate follows Complement's
// CanReceiveDeviceListUpdateDuringPartialStateJoin: while B's state of A's
// unencrypted room is partial, derek of A (a member B does not know yet)
// changes his device list. bob's /sync does not name him then (who is in
// the room is not known); once the state is complete it names derek, and
// not charlie, a member the full state brought who changed nothing (the
// room is not encrypted). Before, derek's update was dropped and every
// member the full state brought was named.
func TestPartialStateDeviceListUpdate(t *testing.T) {
	ctx := context.Background()
	a, b := federatingPair(t, testnode.SQLite)
	alice, charlie, derek, bob := a.Register("alice"), a.Register("charlie"), a.Register("derek"), b.Register("bob")
	// A named room: the partial state holds no member but the joiner.
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "named"})
	testnode.Join(t, charlie, roomID)
	testnode.Join(t, derek, roomID)
	held := heldResync{Remote: b.Rooms.Remote, open: make(chan struct{})}
	b.Rooms.Remote = held
	if _, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins over federation: %v", err)
	}
	if !b.Rooms.HasPartialState(ctx, roomID) || b.Rooms.Membership(derek.UserID, roomID) != "" {
		t.Fatal("the room is not partial on B, or B knows derek already")
	}
	testnode.WaitFor(t, 10*time.Second, "A knows bob's join", func() bool { return a.Rooms.Membership(bob.UserID, roomID) == "join" })
	since := testnode.SyncOnce(t, bob, "", 0).NextBatch

	testnode.Call(t, derek, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, derek).deviceKeys(t)}).OK(t)
	testnode.WaitFor(t, 20*time.Second, "B records derek's device list change", func() bool {
		var n int
		err := b.DB.QueryRow(ctx, "SELECT COUNT(*) FROM e2e_device_changes WHERE user_id = $1", derek.UserID).Scan(&n)
		return err == nil && n > 0
	})
	if s := testnode.SyncOnce(t, bob, since, 0); slices.Contains(s.DeviceLists.Changed, derek.UserID) {
		t.Errorf("bob's sync names derek while the state is partial: %v", s.DeviceLists.Changed)
	}

	close(held.open)
	testnode.WaitFor(t, 20*time.Second, "the resync completes", func() bool { return !b.Rooms.HasPartialState(ctx, roomID) })
	changed := testnode.SyncOnce(t, bob, since, 0).DeviceLists.Changed
	if !slices.Contains(changed, derek.UserID) || slices.Contains(changed, charlie.UserID) {
		t.Errorf("device_lists.changed after the resync %v, want derek and not charlie", changed)
	}
}
