package sync_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

const includeLeave = `{"room":{"include_leave":true}}`

// syncFiltered runs one /sync for c from since with an inline filter.
func syncFiltered(t *testing.T, c *mautrix.Client, since, filter string) *mautrix.RespSync {
	t.Helper()
	s, err := c.SyncRequest(context.Background(), 0, since, filter, false, "")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return s
}

// TestLeftRoomStateStopsAtLeave mirrors Complement's TestArchivedRoomsHistory
// "timeline is empty/initial sync": with an empty timeline, the state of a
// left room is the state at the user's leave, not state set after it.
func TestLeftRoomStateStopsAtLeave(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		testnode.SendState(t, alice, room, event.Type{Type: "a.test.state", Class: event.StateEventType}, "", map[string]any{"my_key": "before"})
		testnode.Leave(t, bob, room)
		testnode.SendState(t, alice, room, event.Type{Type: "a.test.state", Class: event.StateEventType}, "", map[string]any{"my_key": "after"})

		s := syncFiltered(t, bob, "", `{"room":{"timeline":{"limit":0},"include_leave":true}}`)
		left := s.Rooms.Leave[room]
		if left == nil {
			t.Fatal("left room missing from rooms.leave")
		}
		if len(left.Timeline.Events) != 0 {
			t.Fatalf("timeline has %d events, want none", len(left.Timeline.Events))
		}
		if c := testnode.EventContent(left.State.Events, "a.test.state"); c["my_key"] != "before" {
			t.Fatalf("state a.test.state = %v, want the value from before the leave", c)
		}
		var leave bool
		for _, ev := range left.State.Events {
			if ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID) {
				leave = ev.Content.Raw["membership"] == "leave"
			}
		}
		if !leave {
			t.Fatal("state lacks bob's leave")
		}
	})
}

// TestForgottenRoomLeaveInIncrementalSync mirrors Complement's TestRoomForget
// "Leave for forgotten room shows up in v2 incremental /sync": a room left
// and forgotten after the token is in rooms.leave of the incremental sync,
// and in no later or initial sync.
func TestForgottenRoomLeaveInIncrementalSync(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		forgotten := testnode.PublicRoom(t, alice, bob)
		kept := testnode.PublicRoom(t, alice, bob)
		since := syncFiltered(t, alice, "", includeLeave).NextBatch
		testnode.Leave(t, alice, forgotten)
		testnode.Leave(t, alice, kept)
		if _, err := alice.ForgetRoom(ctx, forgotten); err != nil {
			t.Fatalf("forget: %v", err)
		}
		testnode.SendText(t, bob, forgotten, "after the forget")

		s := syncFiltered(t, alice, since, includeLeave)
		if s.Rooms.Leave[kept] == nil {
			t.Fatal("the room left and kept is missing from rooms.leave")
		}
		if s.Rooms.Leave[forgotten] == nil {
			t.Fatal("the room left and forgotten is missing from rooms.leave")
		}
		if s := syncFiltered(t, alice, s.NextBatch, includeLeave); s.Rooms.Leave[forgotten] != nil {
			t.Fatal("the forgotten room's leave is repeated")
		}
		s = syncFiltered(t, alice, "", includeLeave)
		if s.Rooms.Leave[kept] == nil {
			t.Fatal("initial sync: the room left and kept is missing from rooms.leave")
		}
		if s.Rooms.Leave[forgotten] != nil {
			t.Fatal("initial sync shows the forgotten room")
		}
	})
}

// TestInitialSyncShowsRemovals: an initial sync without include_leave
// leaves out rooms the user left of their own accord, but shows those they
// were banned or kicked from, so a client that starts afresh learns of the
// removal (Complement's TestUnbanViaInvite syncs from scratch after a ban).
func TestInitialSyncShowsRemovals(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		banned := testnode.PublicRoom(t, alice, bob)
		kicked := testnode.PublicRoom(t, alice, bob)
		left := testnode.PublicRoom(t, alice, bob)
		if _, err := alice.BanUser(ctx, banned, &mautrix.ReqBanUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("ban: %v", err)
		}
		if _, err := alice.KickUser(ctx, kicked, &mautrix.ReqKickUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("kick: %v", err)
		}
		testnode.Leave(t, bob, left)

		s := syncFiltered(t, bob, "", "")
		for _, c := range []struct {
			room       string
			membership string
		}{{string(banned), "ban"}, {string(kicked), "leave"}} {
			r := s.Rooms.Leave[id.RoomID(c.room)]
			if r == nil {
				t.Fatalf("initial sync: the room bob was removed from (%s) is missing from rooms.leave", c.membership)
			}
			var seen bool
			for _, ev := range append(r.Timeline.Events, r.State.Events...) {
				if ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID) {
					seen = ev.Content.Raw["membership"] == c.membership
				}
			}
			if !seen {
				t.Fatalf("initial sync: rooms.leave of the room bob was removed from lacks his %s", c.membership)
			}
		}
		if s.Rooms.Leave[left] != nil {
			t.Fatal("initial sync without include_leave shows the room bob left himself")
		}
	})
}
