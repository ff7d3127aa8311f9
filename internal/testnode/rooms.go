package testnode

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// The helpers below set up rooms for a test. Each one fails the test when
// its request fails, so a setup step that went wrong can never pass for a
// visibility or permission rule that holds.

// CreateRoom creates a room as c and returns its ID.
func CreateRoom(t testing.TB, c *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
	t.Helper()
	resp, err := c.CreateRoom(context.Background(), req)
	if err != nil {
		t.Fatalf("%s creates a room: %v", c.UserID, err)
	}
	return resp.RoomID
}

// SendText sends a text message as c and returns its event ID.
func SendText(t testing.TB, c *mautrix.Client, room id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(context.Background(), room, body)
	if err != nil {
		t.Fatalf("%s sends %q: %v", c.UserID, body, err)
	}
	return resp.EventID
}

// SendState sends a state event as c and returns its event ID.
func SendState(t testing.TB, c *mautrix.Client, room id.RoomID, typ event.Type, stateKey string, content any) id.EventID {
	t.Helper()
	resp, err := c.SendStateEvent(context.Background(), room, typ, stateKey, content)
	if err != nil {
		t.Fatalf("%s sends %s state: %v", c.UserID, typ.Type, err)
	}
	return resp.EventID
}

// Invite makes c invite user to the room.
func Invite(t testing.TB, c *mautrix.Client, room id.RoomID, user id.UserID) {
	t.Helper()
	if _, err := c.InviteUser(context.Background(), room, &mautrix.ReqInviteUser{UserID: user}); err != nil {
		t.Fatalf("%s invites %s: %v", c.UserID, user, err)
	}
}

// Join makes c join the room.
func Join(t testing.TB, c *mautrix.Client, room id.RoomID) {
	t.Helper()
	if _, err := c.JoinRoomByID(context.Background(), room); err != nil {
		t.Fatalf("%s joins: %v", c.UserID, err)
	}
}

// Leave makes c leave the room.
func Leave(t testing.TB, c *mautrix.Client, room id.RoomID) {
	t.Helper()
	if _, err := c.LeaveRoom(context.Background(), room); err != nil {
		t.Fatalf("%s leaves: %v", c.UserID, err)
	}
}
