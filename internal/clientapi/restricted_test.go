package clientapi_test

import (
	"context"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestRestrictedJoin checks "space members can join": under a restricted or
// knock_restricted join rule a member of the allowed space joins (the join
// names a local inviter as its authoriser) and anyone else is refused, but
// may knock where the rule is knock_restricted.
func TestRestrictedJoin(t *testing.T) {
	cases := []struct {
		version  id.RoomVersion
		rule     event.JoinRule
		canKnock bool
	}{
		{id.RoomV8, event.JoinRuleRestricted, false},
		{id.RoomV10, event.JoinRuleRestricted, false},
		{id.RoomV10, event.JoinRuleKnockRestricted, true},
		{id.RoomV12, event.JoinRuleRestricted, false},
		{id.RoomV12, event.JoinRuleKnockRestricted, true},
	}
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "public_chat", CreationContent: map[string]any{"type": "m.space"},
		})
		if err != nil {
			t.Fatalf("create space: %v", err)
		}
		if _, err := bob.JoinRoomByID(ctx, space.RoomID); err != nil {
			t.Fatalf("bob joins the space: %v", err)
		}
		for _, tc := range cases {
			t.Run(string(tc.version)+"/"+string(tc.rule), func(t *testing.T) {
				carol := n.Register("carol")
				rule := &event.Event{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
					"join_rule": tc.rule,
					"allow":     []any{map[string]any{"type": "m.room_membership", "room_id": space.RoomID}},
				}}}
				room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
					Preset: "private_chat", RoomVersion: tc.version, InitialState: []*event.Event{rule},
				})
				if err != nil {
					t.Fatalf("create room: %v", err)
				}

				// A member of the space joins, authorised by alice.
				if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
					t.Fatalf("space member's join: %v", err)
				}
				var join map[string]any
				if err := alice.StateEvent(ctx, room.RoomID, event.StateMember, bob.UserID.String(), &join); err != nil {
					t.Fatalf("bob's member event: %v", err)
				}
				if join["membership"] != "join" || join["join_authorised_via_users_server"] != alice.UserID.String() {
					t.Fatalf("bob's member event %v, want a join authorised via %s", join, alice.UserID)
				}
				// A join over his join through the state API (a new display
				// name) needs no authoriser: the one he names is dropped
				// rather than checked (Complement's TestRestrictedRoomsLocalJoin).
				memberPath := testnode.V3 + "/rooms/" + url.PathEscape(room.RoomID.String()) + "/state/m.room.member/" + url.PathEscape(bob.UserID.String())
				testnode.Call(t, bob, "PUT", memberPath,
					map[string]any{"membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused"}).OK(t)
				join = nil
				if err := alice.StateEvent(ctx, room.RoomID, event.StateMember, bob.UserID.String(), &join); err != nil {
					t.Fatalf("bob's member event: %v", err)
				}
				if _, named := join["join_authorised_via_users_server"]; named || join["displayname"] != "Bobby" {
					t.Fatalf("bob's member event after the state API join %v, want Bobby with no authoriser", join)
				}

				// Anyone else is refused, also when naming an authoriser
				// herself, and may knock only where the rule says
				// knock_restricted.
				_, err = carol.JoinRoomByID(ctx, room.RoomID)
				testnode.WantErr(t, err, "M_FORBIDDEN", 403)
				testnode.Call(t, carol, "PUT", testnode.V3+"/rooms/"+url.PathEscape(room.RoomID.String())+"/state/m.room.member/"+url.PathEscape(carol.UserID.String()),
					map[string]any{"membership": "join", "join_authorised_via_users_server": alice.UserID}).Want(t, 403, "M_FORBIDDEN")
				_, err = carol.KnockRoom(ctx, room.RoomID.String(), &mautrix.ReqKnockRoom{})
				if !tc.canKnock {
					testnode.WantErr(t, err, "M_FORBIDDEN", 403)
					return
				}
				if err != nil {
					t.Fatalf("knock: %v", err)
				}
				if got := membershipOf(t, alice, room.RoomID, carol.UserID); got != event.MembershipKnock {
					t.Fatalf("carol's membership %s, want knock", got)
				}
				// Once invited, she joins without an authoriser.
				if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
					t.Fatalf("invite: %v", err)
				}
				if _, err := carol.JoinRoomByID(ctx, room.RoomID); err != nil {
					t.Fatalf("join after invite: %v", err)
				}
			})
		}

		// With no local member left who may invite, nobody can authorise.
		rule := &event.Event{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
			"join_rule": "restricted",
			"allow":     []any{map[string]any{"type": "m.room_membership", "room_id": space.RoomID}},
		}}}
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "private_chat", RoomVersion: id.RoomV10, InitialState: []*event.Event{rule},
		})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		if _, err := alice.LeaveRoom(ctx, room.RoomID); err != nil {
			t.Fatalf("leave: %v", err)
		}
		_, err = bob.JoinRoomByID(ctx, room.RoomID)
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)
	})
}

// TestRestrictedJoinMangledAllow checks that allow entries of the wrong
// shape are left out, not taken for a join rule that cannot be read: a
// restricted room whose allow list holds only a string admits nobody
// uninvited (Complement's "Join should fail with mangled join rules").
func TestRestrictedJoinMangledAllow(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "public_chat", CreationContent: map[string]any{"type": "m.space"},
		})
		if err != nil {
			t.Fatalf("create space: %v", err)
		}
		if _, err := bob.JoinRoomByID(ctx, space.RoomID); err != nil {
			t.Fatalf("bob joins the space: %v", err)
		}
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV10})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		setRule := func(allow []any) {
			t.Helper()
			if _, err := alice.SendStateEvent(ctx, room.RoomID, event.StateJoinRules, "",
				map[string]any{"join_rule": "restricted", "allow": allow}); err != nil {
				t.Fatalf("set join rules: %v", err)
			}
		}
		setRule([]any{"invalid"})
		_, err = bob.JoinRoomByID(ctx, room.RoomID)
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)

		// A good entry beside a bad one still admits the space's members.
		setRule([]any{"invalid", map[string]any{"type": "m.room_membership", "room_id": space.RoomID}})
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatalf("space member's join with one good allow entry: %v", err)
		}
	})
}
