package node_test

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestCreateRoomV12Defaults mirrors Complement's
// TestMSC4289PrivilegedRoomCreators ("m.room.tombstone needs PL150 in the PL
// event") and TestMSC4289PrivilegedRoomCreators_AdditionalCreatorsAndInvited:
// a v12 room's power levels put the tombstone at 150, above every admin, and
// a trusted_private_chat merges its invitees into the additional_creators
// the client gave, each once.
func TestCreateRoomV12Defaults(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")

		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: id.RoomV12})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		var pl event.PowerLevelsEventContent
		if err := alice.StateEvent(ctx, room.RoomID, event.StatePowerLevels, "", &pl); err != nil {
			t.Fatalf("power levels: %v", err)
		}
		if got := pl.Events[event.StateTombstone.Type]; got != 150 {
			t.Errorf("m.room.tombstone level %d, want 150", got)
		}
		if len(pl.Users) != 0 {
			t.Errorf("power levels list users %v, want none (the creator is implicit)", pl.Users)
		}

		dm, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			RoomVersion: id.RoomV12, Preset: "trusted_private_chat", IsDirect: true,
			Invite:          []id.UserID{bob.UserID, carol.UserID},
			CreationContent: map[string]any{"additional_creators": []id.UserID{carol.UserID}},
		})
		if err != nil {
			t.Fatalf("create DM: %v", err)
		}
		var create event.CreateEventContent
		if err := alice.StateEvent(ctx, dm.RoomID, event.StateCreate, "", &create); err != nil {
			t.Fatalf("create event: %v", err)
		}
		got := slices.Clone(create.AdditionalCreators)
		slices.Sort(got)
		want := []id.UserID{bob.UserID, carol.UserID}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("additional_creators %v, want %v", create.AdditionalCreators, want)
		}
	})
}

// TestInviteStateFullCreateEvent mirrors Complement's
// TestMSC4311FullCreateEventOnStrippedState: the create event in an
// invite's stripped state is the full event, whose ID in a v12 room is the
// room ID.
func TestInviteStateFullCreateEvent(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: id.RoomV12, Preset: "public_chat"})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("invite: %v", err)
		}
		inv := testnode.SyncOnce(t, bob, "", 0).Rooms.Invite[room.RoomID]
		if inv == nil {
			t.Fatal("bob's sync lacks the invite")
		}
		var create *event.Event
		for _, ev := range inv.State.Events {
			if ev.Type == event.StateCreate {
				create = ev
			}
		}
		if create == nil {
			t.Fatalf("invite_state lacks the create event: %v", strippedKeys(inv.State.Events))
		}
		if create.Timestamp == 0 {
			t.Error("the create event in invite_state has no origin_server_ts")
		}
		if want := id.EventID("$" + room.RoomID.String()[1:]); create.ID != want {
			t.Errorf("the create event in invite_state has ID %q, want %q", create.ID, want)
		}
	})
}
