package federation_test

import (
	"context"
	"testing"
	"time"

	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

var _ rooms.Remote = (*fed.RoomRemote)(nil)

// TestRoomRemoteWired checks that a federating node gives its room engine
// the federation adapter, which finds another node's key over the
// network, and that a node without federation gives it none (remote
// events are then refused).
func TestRoomRemoteWired(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	remote, ok := a.Rooms.Remote.(*fed.RoomRemote)
	if !ok {
		t.Fatalf("the room engine's Remote is %T, want *federation.RoomRemote", a.Rooms.Remote)
	}
	bKeyID, bKey, _ := serverKey(t, b)
	got, err := remote.VerifyKey(ctx, b.Config.ServerName, bKeyID, time.Now())
	if err != nil || got != bKey {
		t.Fatalf("VerifyKey through the adapter = %q, %v; want %q", got, err, bKey)
	}
	if _, err := remote.GetEvent(ctx, b.Config.ServerName, "$unknown"); err == nil {
		t.Errorf("GetEvent of an unknown event succeeded")
	}
	local := testnode.Start(t, testnode.SQLite)
	if local.Rooms.Remote != nil {
		t.Errorf("a node without federation has a room Remote: %T", local.Rooms.Remote)
	}
}
