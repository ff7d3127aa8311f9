package clientapi_test

import (
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestRemoteInvitesRefused: without federation, every way to invite a
// user of another server is refused with M_FORBIDDEN and writes nothing,
// while the same request for a local user succeeds.
func TestRemoteInvitesRefused(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	const remote = id.UserID("@carol:other.example")
	joined := func() int {
		t.Helper()
		rooms, err := alice.JoinedRooms(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return len(rooms.JoinedRooms)
	}
	createRoom := func(invite ...id.UserID) *testnode.Response {
		return testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", map[string]any{"invite": invite})
	}

	room := id.RoomID(createRoom(bob.UserID).OK(t)["room_id"].(string))
	createRoom(bob.UserID, remote).Want(t, 403, "M_FORBIDDEN")
	if got := joined(); got != 1 {
		t.Fatalf("the refused createRoom left alice in %d rooms, want 1", got)
	}

	roomPath := testnode.V3 + "/rooms/" + url.PathEscape(string(room))
	memberPath := func(u id.UserID) string { return roomPath + "/state/m.room.member/" + url.PathEscape(string(u)) }
	testnode.Call(t, alice, "POST", roomPath+"/invite", map[string]any{"user_id": remote}).Want(t, 403, "M_FORBIDDEN")
	testnode.Call(t, alice, "PUT", memberPath(remote), map[string]any{"membership": "invite"}).Want(t, 403, "M_FORBIDDEN")
	// The same requests for a local user work; a ban of a remote user
	// needs no federation and is allowed.
	carol := n.Register("carol")
	testnode.Call(t, alice, "POST", roomPath+"/invite", map[string]any{"user_id": carol.UserID}).OK(t)
	dave := n.Register("dave")
	testnode.Call(t, alice, "PUT", memberPath(dave.UserID), map[string]any{"membership": "invite"}).OK(t)
	testnode.Call(t, alice, "GET", memberPath(dave.UserID), nil).OK(t)
	testnode.Call(t, alice, "GET", memberPath(remote), nil).Want(t, 404, "M_NOT_FOUND")
	testnode.Call(t, alice, "PUT", memberPath(remote), map[string]any{"membership": "ban"}).OK(t)
}

// TestRemoteAliasJoinRefused: joining or knocking by an alias of another
// server says that federation is off, where an unknown local alias is
// simply not found and a known one works.
func TestRemoteAliasJoinRefused(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	testnode.Call(t, alice, "POST", testnode.V3+"/createRoom", map[string]any{"preset": "public_chat", "room_alias_name": "here"}).OK(t)
	for _, action := range []string{"join", "knock"} {
		path := func(alias string) string { return testnode.V3 + "/" + action + "/" + url.PathEscape(alias) }
		testnode.Call(t, bob, "POST", path("#here:other.example"), map[string]any{}).Want(t, 403, "M_FORBIDDEN")
		testnode.Call(t, bob, "POST", path("#nowhere:localhost"), map[string]any{}).Want(t, 404, "M_NOT_FOUND")
	}
	testnode.Call(t, bob, "POST", testnode.V3+"/join/"+url.PathEscape("#here:localhost"), map[string]any{}).OK(t)
}

// TestRejectInviteAfterLocalMembersLeft mirrors Complement's TestRoomsInvite
// "Invited user can reject invite for empty room" on a federating node: the
// room is this node's own, its inviter has left, so no other server can
// take the rejection; it is made here, and the invite is gone from /sync.
func TestRejectInviteAfterLocalMembersLeft(t *testing.T) {
	n := testnode.StartFederating(t, testnode.SQLite, testnode.NewCA(t))
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	testnode.Leave(t, alice, room)
	testnode.Call(t, bob, "POST", testnode.V3+"/rooms/"+url.PathEscape(string(room))+"/leave", map[string]any{}).Want(t, 200, "")
	s := testnode.SyncOnce(t, bob, "", 0)
	if _, invited := s.Rooms.Invite[room]; invited {
		t.Fatal("the rejected invite is still in /sync")
	}
	if member := n.Rooms.Membership(bob.UserID, room); member != "leave" {
		t.Fatalf("bob's membership after rejecting: %q, want leave", member)
	}
}
