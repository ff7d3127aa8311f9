package sync_test

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestRemoteInviteStrippedState receives an invite over federation to a
// room the invitee's node is not in: /sync shows it in rooms.invite with
// the stripped state the inviting server sent, where it used to read the
// (unknown) room's state and show nothing but the invite.
func TestRemoteInviteStrippedState(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Over there", Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	invitee := string(bob.UserID)
	inv, err := a.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.member", StateKey: &invitee, Sender: alice.UserID,
		Content: json.RawMessage(`{"membership":"invite"}`)})
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	name, err := a.Rooms.StateEvent(ctx, room, "m.room.name", "")
	if err != nil || name == nil {
		t.Fatalf("name: %v", err)
	}
	stripped, _ := json.Marshal(map[string]any{"type": name.Type, "state_key": "", "sender": name.Sender, "content": name.Content()})
	version, err := a.Rooms.Version(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Rooms.ReceiveInvite(ctx, a.Config.ServerName, version, inv.JSON, []json.RawMessage{stripped}); err != nil {
		t.Fatalf("receive invite: %v", err)
	}

	s := syncFiltered(t, bob, "", "")
	invited := s.Rooms.Invite[room]
	if invited == nil {
		t.Fatalf("the invite is not in rooms.invite: %+v", s.Rooms)
	}
	var gotName, gotInvite bool
	for _, ev := range invited.State.Events {
		switch {
		case ev.Type == event.StateRoomName:
			gotName = ev.Content.Raw["name"] == "Over there"
		case ev.Type == event.StateMember && ev.GetStateKey() == invitee:
			gotInvite = ev.Content.Raw["membership"] == "invite" && ev.Sender == alice.UserID
		}
	}
	if !gotName || !gotInvite {
		t.Errorf("invite_state lacks the room name (%v) or the invite (%v): %+v", gotName, gotInvite, invited.State.Events)
	}
	if m := b.Rooms.Membership(id.UserID(invitee), room); m != "invite" {
		t.Errorf("membership = %q", m)
	}
}
