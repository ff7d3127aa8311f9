package clientapi_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestMembersAtPageTokens: /members?at= takes the topological tokens
// /messages hands out as well as /sync's, answering the members as of the
// event the token names, and an empty at is no bound at all.
func TestMembersAtPageTokens(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	testnode.SendText(t, alice, room, "before bob")
	if _, err := bob.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	testnode.SendText(t, bob, room, "after bob")

	members := func(at string) int {
		t.Helper()
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/members?at=" + url.QueryEscape(at)
		return len(testnode.Decode[mautrix.RespMembers](t, testnode.Call(t, alice, "GET", path, nil).Want(t, 200, "").Body).Chunk)
	}
	page := func(limit int) string {
		t.Helper()
		resp, err := alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, limit)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.End, "t") {
			t.Fatalf("/messages end token %q is not topological", resp.End)
		}
		return resp.End
	}
	if got := members(""); got != 2 {
		t.Errorf("members with an empty at: %d, want 2", got)
	}
	if got := members(page(1)); got != 2 {
		t.Errorf("members at bob's message: %d, want 2", got)
	}
	if got := members(page(3)); got != 1 {
		t.Errorf("members at the message before bob's join: %d, want 1", got)
	}
	testnode.Call(t, alice, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/members?at=t1_x", nil).Want(t, 400, "M_INVALID_PARAM")
}
