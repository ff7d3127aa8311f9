package clientapi_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestLeaveTwice checks that leaving a room already left answers 200 and
// changes nothing (the spec names no error for it; clients and
// Complement's cleanup leave twice), while a user who was never in the
// room is still refused.
func TestLeaveTwice(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatalf("first leave: %v", err)
	}
	var before, after mautrix.RespMessages
	if r, err := alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50); err != nil {
		t.Fatal(err)
	} else {
		before = *r
	}
	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatalf("second leave: %v", err)
	}
	if r, err := alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50); err != nil {
		t.Fatal(err)
	} else {
		after = *r
	}
	if len(after.Chunk) != len(before.Chunk) {
		t.Fatalf("the second leave added events: %d before, %d after", len(before.Chunk), len(after.Chunk))
	}
	_, err = carol.LeaveRoom(ctx, room)
	testnode.WantErr(t, err, "M_FORBIDDEN", 0)
}
