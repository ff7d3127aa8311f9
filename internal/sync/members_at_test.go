package sync_test

import (
	"context"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestMembersAtPrevBatch mirrors Complement's TestGetRoomMembersAtPoint: the
// prev_batch of an initial sync whose timeline holds the whole room names a
// point where the room has its members, so /members?at= answers the members
// then (alice) and not those who joined since (bob), nor the empty state
// before the room's first event.
func TestMembersAtPrevBatch(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		testnode.SendText(t, alice, room, "Hello world!")

		s := syncFiltered(t, alice, "", "")
		joined := s.Rooms.Join[room]
		if joined == nil || joined.Timeline.Limited || joined.Timeline.PrevBatch == "" {
			t.Fatalf("initial sync: want the whole room in an unlimited timeline with prev_batch, got %+v", joined)
		}
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		testnode.SendText(t, bob, room, "Hello back")

		path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/members?at=" + url.QueryEscape(joined.Timeline.PrevBatch)
		members := testnode.Decode[mautrix.RespMembers](t, testnode.Call(t, alice, "GET", path, nil).Want(t, 200, "").Body)
		if len(members.Chunk) != 1 || members.Chunk[0].GetStateKey() != alice.UserID.String() {
			t.Fatalf("members at prev_batch %s: %d events, want alice's alone", joined.Timeline.PrevBatch, len(members.Chunk))
		}
	})
}
