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

func membershipOf(t *testing.T, c *mautrix.Client, room id.RoomID, user id.UserID) event.Membership {
	t.Helper()
	var m event.MemberEventContent
	if err := c.StateEvent(context.Background(), room, event.StateMember, user.String(), &m); err != nil {
		t.Fatalf("member event of %s: %v", user, err)
	}
	return m.Membership
}

func TestKnock(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol, dave := n.Register("alice"), n.Register("bob"), n.Register("carol"), n.Register("dave")
		knockRule := []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}}
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "private_chat", RoomVersion: id.RoomV10, RoomAliasName: "knockers", InitialState: knockRule,
		})
		if err != nil {
			t.Fatal(err)
		}
		room := created.RoomID

		// Bob knocks through the alias; he is not let in by himself.
		resp, err := bob.KnockRoom(ctx, "#knockers:localhost", &mautrix.ReqKnockRoom{Reason: "let me in"})
		if err != nil {
			t.Fatalf("knock: %v", err)
		}
		if resp.RoomID != room {
			t.Fatalf("knock answered %s, want %s", resp.RoomID, room)
		}
		s, err := bob.FullSyncRequest(ctx, mautrix.ReqSync{})
		if err != nil {
			t.Fatal(err)
		}
		kr := s.Rooms.Knock[room]
		if kr == nil || len(kr.State.Events) == 0 {
			t.Fatalf("bob's sync lacks the knock: %+v", s.Rooms)
		}
		if got := membershipOf(t, alice, room, bob.UserID); got != event.MembershipKnock {
			t.Fatalf("bob's membership %s, want knock", got)
		}
		_, err = bob.JoinRoomByID(ctx, room)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		// Alice accepts by inviting; bob joins.
		if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("invite after knock: %v", err)
		}
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatalf("join after invite: %v", err)
		}
		_, err = bob.KnockRoom(ctx, room.String(), &mautrix.ReqKnockRoom{})
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)

		// Carol withdraws her knock; alice refuses dave's.
		for _, c := range []*mautrix.Client{carol, dave} {
			if _, err := c.KnockRoom(ctx, room.String(), &mautrix.ReqKnockRoom{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := carol.LeaveRoom(ctx, room); err != nil {
			t.Fatalf("withdraw knock: %v", err)
		}
		if _, err := alice.KickUser(ctx, room, &mautrix.ReqKickUser{UserID: dave.UserID, Reason: "no"}); err != nil {
			t.Fatalf("refuse knock: %v", err)
		}
		for _, u := range []id.UserID{carol.UserID, dave.UserID} {
			if got := membershipOf(t, alice, room, u); got != event.MembershipLeave {
				t.Fatalf("%s: membership %s, want leave", u, got)
			}
		}

		// Rooms that do not take knocks.
		invite, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = carol.KnockRoom(ctx, invite.RoomID.String(), &mautrix.ReqKnockRoom{})
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		old, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomV6})
		if err != nil {
			t.Fatal(err)
		}
		_, err = carol.KnockRoom(ctx, old.RoomID.String(), &mautrix.ReqKnockRoom{})
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		_, err = carol.KnockRoom(ctx, "#nowhere:localhost", &mautrix.ReqKnockRoom{})
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
		testnode.Call(t, carol, "POST", "/_matrix/client/v3/knock/"+url.PathEscape("nonsense"), map[string]any{}).Want(t, 400, "M_INVALID_PARAM")
	})
}

func TestForget(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, room, _ := chat(t, n, 2)
		carol := n.Register("carol")
		if _, err := carol.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		_, err := bob.ForgetRoom(ctx, room)
		testnode.WantErr(t, err, "M_UNKNOWN", 0)
		for _, c := range []*mautrix.Client{bob, carol} {
			if _, err := c.LeaveRoom(ctx, room); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := bob.ForgetRoom(ctx, room); err != nil {
			t.Fatalf("forget: %v", err)
		}
		if _, err := bob.ForgetRoom(ctx, room); err != nil {
			t.Fatalf("forget twice: %v", err)
		}
		includeLeave := mautrix.ReqSync{FilterID: `{"room":{"include_leave":true}}`}
		s, err := bob.FullSyncRequest(ctx, includeLeave)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Rooms.Leave[room]; ok {
			t.Fatal("a forgotten room is still in bob's leave section")
		}
		s, err = carol.FullSyncRequest(ctx, includeLeave)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Rooms.Leave[room]; !ok {
			t.Fatal("carol left without forgetting: the room belongs in her leave section")
		}
		// The history is gone for bob, not for carol.
		_, err = bob.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 10)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
		if _, err := carol.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 10); err != nil {
			t.Fatal(err)
		}
		// Joining again brings the room back.
		if _, err := bob.JoinRoomByID(ctx, room); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 10); err != nil {
			t.Fatal(err)
		}
		_, err = alice.ForgetRoom(ctx, "!unknown:localhost")
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
	})
}
