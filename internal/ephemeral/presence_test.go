package ephemeral_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestPresence(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol, _ := setup(t, n)
		since := testnode.SyncOnce(t, bob, "", 0).NextBatch

		ch := pollUntil(bob, since, func(s *mautrix.RespSync) bool {
			p := presenceOf(s, alice.UserID)
			return p["presence"] == "online" && p["status_msg"] == "busy"
		})
		time.Sleep(50 * time.Millisecond)
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "busy"}); err != nil {
			t.Fatalf("set presence: %v", err)
		}
		s := await(t, "presence change", ch)
		if p := presenceOf(s, alice.UserID); p["currently_active"] != true || p["last_active_ago"] == nil {
			t.Fatalf("presence content %v", p)
		}
		p, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || p.Presence != event.PresenceOnline || p.StatusMsg != "busy" || !p.CurrentlyActive {
			t.Fatalf("GET presence: %+v %v", p, err)
		}
		if s := testnode.SyncOnce(t, bob, s.NextBatch, 0); presenceOf(s, alice.UserID) != nil {
			t.Fatal("unchanged presence repeated")
		}
		// Carol shares no room with alice: no presence for her.
		if presenceOf(testnode.SyncOnce(t, carol, "", 0), alice.UserID) != nil {
			t.Fatal("carol sees alice's presence")
		}
		if s := testnode.SyncOnce(t, alice, "", 0); presenceOf(s, alice.UserID)["presence"] != "online" {
			t.Fatal("alice's own presence missing from her sync")
		}
		validateSyncEvents(t, bob)

		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable}); err != nil {
			t.Fatal(err)
		}
		if p := presenceOf(testnode.SyncOnce(t, bob, s.NextBatch, 0), alice.UserID); p["presence"] != "unavailable" || p["status_msg"] != nil {
			t.Fatalf("presence after change: %v", p)
		}
		// Syncing marks a user online (the sync handler calls SetOnline).
		n.Ephemeral.SetOnline(carol.UserID)
		if p, err := carol.GetOwnPresence(ctx); err != nil || p.Presence != event.PresenceOnline {
			t.Fatalf("after SetOnline: %+v %v", p, err)
		}

		path := func(u string) string { return fmt.Sprintf("/presence/%s/status", url.PathEscape(u)) }
		if body := testnode.Call(t, bob, "GET", testnode.V3+path(string(alice.UserID)), nil).OK(t); body["presence"] != "unavailable" {
			t.Fatalf("GET presence: %v", body)
		}
		for _, tc := range []struct {
			name, method string
			c            *mautrix.Client
			path         string
			body         string
			code         string
		}{
			{"no shared room", "GET", carol, path(string(alice.UserID)), "", "M_FORBIDDEN"},
			{"unknown user", "GET", bob, path("@nobody:localhost"), "", "M_NOT_FOUND"},
			{"set another user's", "PUT", bob, path(string(alice.UserID)), `{"presence":"online"}`, "M_FORBIDDEN"},
			{"bad state", "PUT", bob, path(string(bob.UserID)), `{"presence":"asleep"}`, "M_INVALID_PARAM"},
			{"missing state", "PUT", bob, path(string(bob.UserID)), `{"status_msg":"hi"}`, "M_BAD_JSON"},
			{"status not a string", "PUT", bob, path(string(bob.UserID)), `{"presence":"online","status_msg":5}`, "M_BAD_JSON"},
		} {
			res := testnode.Call(t, tc.c, tc.method, testnode.V3+tc.path, tc.body)
			if res.ErrCode() != tc.code || res.Status < 400 {
				t.Errorf("%s: got %d %s, want %s", tc.name, res.Status, res.Body, tc.code)
			}
		}

		// The durable copy survives a restart.
		n2 := n.Restart()
		u, _ := url.Parse(n2.URL)
		bob.HomeserverURL = u
		if p, err := bob.GetPresence(ctx, alice.UserID); err != nil || p.Presence != event.PresenceUnavailable {
			t.Fatalf("after restart: %+v %v", p, err)
		}
	})
}

// TestPresenceOfNewlySharedUsers mirrors Complement's TestSync "Newly joined
// room includes presence in incremental sync" and "Get presence for newly
// joined members in incremental sync" (and TestMembersLocal's "Existing
// members see new members' presence"): presence that did not change since
// the token is still sent to users who came to share a room since then,
// once.
func TestPresenceOfNewlySharedUsers(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		// Both sync once: both are online, before any shared room.
		aliceSince := testnode.SyncOnce(t, alice, "", 0).NextBatch
		bobSince := testnode.SyncOnce(t, bob, "", 0).NextBatch
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		aliceSince = testnode.SyncOnce(t, alice, aliceSince, 0).NextBatch
		testnode.Join(t, bob, room)

		// The joiner sees the members' presence in their incremental sync.
		s := testnode.SyncOnce(t, bob, bobSince, 0)
		if s.Rooms.Join[room] == nil {
			t.Fatal("bob's sync lacks the room he joined")
		}
		if p := presenceOf(s, alice.UserID); p["presence"] != "online" {
			t.Fatalf("joiner: alice's presence %v, want online", p)
		}
		if p := presenceOf(testnode.SyncOnce(t, bob, s.NextBatch, 0), alice.UserID); p != nil {
			t.Fatalf("joiner: alice's presence repeated: %v", p)
		}

		// The existing member sees the joiner's presence.
		s = testnode.SyncOnce(t, alice, aliceSince, 0)
		if s.Rooms.Join[room] == nil {
			t.Fatal("alice's sync lacks bob's join")
		}
		if p := presenceOf(s, bob.UserID); p["presence"] != "online" {
			t.Fatalf("member: bob's presence %v, want online", p)
		}
		if p := presenceOf(testnode.SyncOnce(t, alice, s.NextBatch, 0), bob.UserID); p != nil {
			t.Fatalf("member: bob's presence repeated: %v", p)
		}
	})
}
