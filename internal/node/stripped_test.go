package node_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// strippedKeys returns the (type, state_key) pairs of stripped state events,
// mapped to their sender.
func strippedKeys(evs []*event.Event) map[[2]string]id.UserID {
	out := map[[2]string]id.UserID{}
	for _, ev := range evs {
		sk := ""
		if ev.StateKey != nil {
			sk = *ev.StateKey
		}
		out[[2]string{ev.Type.Type, sk}] = ev.Sender
	}
	return out
}

// TestStrippedStateNamesInviter checks that an invite's stripped state, as
// /sync delivers it, carries the spec's room events and the inviter's own
// membership (clients name a DM invite after the inviter), and that a
// knock's carries the room's events and the knock.
func TestStrippedStateNamesInviter(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
			t.Fatal(err)
		}
		dm, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bob.UserID}, Topic: "just us",
		})
		if err != nil {
			t.Fatalf("create DM: %v", err)
		}
		s := testnode.SyncOnce(t, bob, "", 0)
		inv := s.Rooms.Invite[dm.RoomID]
		if inv == nil {
			t.Fatalf("bob's sync lacks the invite: %+v", s.Rooms)
		}
		got := strippedKeys(inv.State.Events)
		for _, k := range [][2]string{
			{"m.room.create", ""}, {"m.room.join_rules", ""}, {"m.room.topic", ""},
			{"m.room.member", alice.UserID.String()}, {"m.room.member", bob.UserID.String()},
		} {
			if _, ok := got[k]; !ok {
				t.Errorf("invite_state lacks %v: has %v", k, got)
			}
		}
		if sender := got[[2]string{"m.room.member", bob.UserID.String()}]; sender != alice.UserID {
			t.Errorf("invite event sent by %s, want %s", sender, alice.UserID)
		}
		for _, ev := range inv.State.Events {
			if ev.Type == event.StateMember && ev.GetStateKey() == alice.UserID.String() {
				if err := ev.Content.ParseRaw(ev.Type); err != nil {
					t.Fatal(err)
				}
				m := ev.Content.AsMember()
				if m.Membership != event.MembershipJoin || m.Displayname != "Alice Liddell" {
					t.Errorf("inviter's membership in invite_state: %+v, want join as Alice Liddell", m)
				}
			}
		}

		// A knock: the room's events and carol's own knock, nobody else's
		// membership.
		knockRule := []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}}
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "private_chat", Name: "Knock here", RoomVersion: id.RoomV10, InitialState: knockRule,
		})
		if err != nil {
			t.Fatalf("create knock room: %v", err)
		}
		if _, err := carol.KnockRoom(ctx, room.RoomID.String(), &mautrix.ReqKnockRoom{}); err != nil {
			t.Fatalf("knock: %v", err)
		}
		s = testnode.SyncOnce(t, carol, "", 0)
		kn := s.Rooms.Knock[room.RoomID]
		if kn == nil {
			t.Fatalf("carol's sync lacks the knock: %+v", s.Rooms)
		}
		got = strippedKeys(kn.State.Events)
		for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.join_rules", ""}, {"m.room.name", ""}, {"m.room.member", carol.UserID.String()}} {
			if _, ok := got[k]; !ok {
				t.Errorf("knock_state lacks %v: has %v", k, got)
			}
		}
		if _, ok := got[[2]string{"m.room.member", alice.UserID.String()}]; ok {
			t.Errorf("knock_state shows a member other than the knocker: %v", got)
		}
	})
}
