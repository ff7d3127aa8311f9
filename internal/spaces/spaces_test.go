package spaces_test

import (
	"context"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// addChild links child under space with an m.space.child event.
func addChild(t *testing.T, c *mautrix.Client, space, child id.RoomID, content map[string]any) {
	t.Helper()
	if content == nil {
		content = map[string]any{}
	}
	if _, ok := content["via"]; !ok {
		content["via"] = []string{"localhost"}
	}
	if _, err := c.SendStateEvent(context.Background(), space, event.StateSpaceChild, string(child), content); err != nil {
		t.Fatalf("add child: %v", err)
	}
}

func roomIDs(resp *mautrix.RespHierarchy) []id.RoomID {
	var out []id.RoomID
	for _, r := range resp.Rooms {
		out = append(out, r.RoomID)
	}
	return out
}

func TestHierarchy(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Space", Preset: "public_chat",
			CreationContent: map[string]any{"type": "m.space"}})
		if err != nil {
			t.Fatal(err)
		}
		mk := func(name, preset, roomType string) id.RoomID {
			req := &mautrix.ReqCreateRoom{Name: name, Preset: preset, Topic: name + " topic"}
			if roomType != "" {
				req.CreationContent = map[string]any{"type": roomType}
			}
			r, err := alice.CreateRoom(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return r.RoomID
		}
		a, b, private := mk("a", "public_chat", "m.space"), mk("b", "public_chat", ""), mk("private", "private_chat", "")
		sub, stray := mk("sub", "public_chat", ""), mk("stray", "public_chat", "")
		addChild(t, alice, space.RoomID, b, map[string]any{"order": "2"})
		addChild(t, alice, space.RoomID, a, map[string]any{"order": "1", "suggested": true})
		addChild(t, alice, space.RoomID, private, nil)
		addChild(t, alice, a, sub, nil)
		// m.space.child has no effect in a room that is not a space
		// (Complement's TestClientSpacesSummary: R2's link to R5).
		addChild(t, alice, b, stray, nil)
		// A child event without via is no child.
		testnode.SendState(t, alice, space.RoomID, event.StateSpaceChild, "!nowhere:localhost", map[string]any{})

		// Alice sees everything, depth first, ordered.
		resp, err := alice.Hierarchy(ctx, space.RoomID, &mautrix.ReqHierarchy{})
		if err != nil {
			t.Fatal(err)
		}
		want := []id.RoomID{space.RoomID, a, sub, b, private}
		if got := roomIDs(resp); !equal(got, want) {
			t.Fatalf("alice's hierarchy = %v, want %v", got, want)
		}
		if resp.Rooms[0].RoomType != "m.space" || len(resp.Rooms[0].ChildrenState) != 3 || resp.Rooms[1].Topic != "a topic" {
			t.Fatalf("space chunk: %+v", resp.Rooms[0])
		}
		if cs := resp.Rooms[3].ChildrenState; len(cs) != 0 {
			t.Fatalf("room b is no space, yet has children_state %+v", cs)
		}
		// Bob cannot preview the private room.
		resp, err = bob.Hierarchy(ctx, space.RoomID, &mautrix.ReqHierarchy{})
		if err != nil {
			t.Fatal(err)
		}
		if got := roomIDs(resp); !equal(got, []id.RoomID{space.RoomID, a, sub, b}) {
			t.Fatalf("bob's hierarchy = %v", got)
		}
		// max_depth and suggested_only.
		zero, one := 0, 1
		resp, _ = alice.Hierarchy(ctx, space.RoomID, &mautrix.ReqHierarchy{MaxDepth: &zero})
		if got := roomIDs(resp); !equal(got, []id.RoomID{space.RoomID}) {
			t.Fatalf("max_depth 0: %v", got)
		}
		resp, _ = alice.Hierarchy(ctx, space.RoomID, &mautrix.ReqHierarchy{MaxDepth: &one})
		if got := roomIDs(resp); !equal(got, []id.RoomID{space.RoomID, a, b, private}) {
			t.Fatalf("max_depth 1: %v", got)
		}
		resp, _ = alice.Hierarchy(ctx, space.RoomID, &mautrix.ReqHierarchy{SuggestedOnly: true})
		if got := roomIDs(resp); !equal(got, []id.RoomID{space.RoomID, a}) {
			t.Fatalf("suggested_only: %v", got)
		}
		// Pagination.
		var all []id.RoomID
		req := &mautrix.ReqHierarchy{Limit: 2}
		for i := 0; i < 5; i++ {
			resp, err := alice.Hierarchy(ctx, space.RoomID, req)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, roomIDs(resp)...)
			if resp.NextBatch == "" {
				break
			}
			req.From = resp.NextBatch
		}
		if !equal(all, want) {
			t.Fatalf("paginated: %v, want %v", all, want)
		}
		// A token cannot change the walk.
		first, _ := alice.Hierarchy(ctx, space.RoomID, &mautrix.ReqHierarchy{Limit: 1})
		n.Do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(string(space.RoomID))+"/hierarchy?max_depth=1&from="+url.QueryEscape(first.NextBatch), alice.AccessToken, nil).
			Want(t, 400, "M_INVALID_PARAM")
		// The private room's hierarchy is forbidden to Bob.
		n.Do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(string(private))+"/hierarchy", bob.AccessToken, nil).Want(t, 403, "M_FORBIDDEN")
		// Spec-valid body.
		n.Do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(string(space.RoomID))+"/hierarchy", alice.AccessToken, nil)
	})
}

func TestRoomSummary(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		pub, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Pub", Topic: "hello", Preset: "public_chat", RoomAliasName: "pub"})
		if err != nil {
			t.Fatal(err)
		}
		priv, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Priv", Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		path := func(r string) string { return "/_matrix/client/v1/room_summary/" + url.PathEscape(r) }

		body := n.Do(t, "GET", path("#pub:localhost"), bob.AccessToken, nil).OK(t)
		if body["room_id"] != string(pub.RoomID) || body["name"] != "Pub" || body["topic"] != "hello" ||
			body["join_rule"] != "public" || body["num_joined_members"] != 1.0 || body["membership"] != "leave" || body["room_version"] == nil {
			t.Fatalf("public summary for bob: %v", body)
		}
		if body := n.Do(t, "GET", path(string(pub.RoomID)), alice.AccessToken, nil).OK(t); body["membership"] != "join" {
			t.Fatalf("summary for alice: %v", body)
		}
		// Unauthenticated: public rooms only, and no membership.
		if body := n.Do(t, "GET", path(string(pub.RoomID)), "", nil).OK(t); body["membership"] != nil {
			t.Fatalf("anonymous summary: %v", body)
		}
		for _, tc := range []struct {
			room, token string
		}{
			{string(priv.RoomID), bob.AccessToken},
			{string(priv.RoomID), ""},
			{"!unknown:localhost", alice.AccessToken},
			{"#nope:localhost", alice.AccessToken},
		} {
			if r := n.Do(t, "GET", path(tc.room), tc.token, nil); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
				t.Errorf("%s: %d %s, want 404 M_NOT_FOUND", tc.room, r.Status, r.Body)
			}
		}
		// An invited user may preview.
		if _, err := alice.InviteUser(ctx, priv.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatal(err)
		}
		if body := n.Do(t, "GET", path(string(priv.RoomID)), bob.AccessToken, nil).OK(t); body["membership"] != "invite" || body["join_rule"] != "invite" {
			t.Fatalf("invited summary: %v", body)
		}
	})
}

// TestRoomSummaryUnstablePaths: MSC3266's unstable paths, the only ones
// matrix-js-sdk before 37 asks (Cinny 4 showed them as 404s in the
// browser's console on every room it opened), answer the stable summary,
// with the room version and encryption also under their prefixed names,
// and the stable path's errors.
func TestRoomSummaryUnstablePaths(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob := n.Register("alice"), n.Register("bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Name: "Enc", Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "/_matrix/client/unstable/im.nheko.summary"
	esc := url.PathEscape(string(room.RoomID))
	for _, path := range []string{prefix + "/summary/" + esc, prefix + "/rooms/" + esc + "/summary"} {
		body := n.Do(t, "GET", path, alice.AccessToken, nil).OK(t)
		if body["room_id"] != string(room.RoomID) || body["name"] != "Enc" || body["membership"] != "join" ||
			body["encryption"] != "m.megolm.v1.aes-sha2" || body["im.nheko.summary.encryption"] != "m.megolm.v1.aes-sha2" ||
			body["room_version"] == nil || body["im.nheko.summary.room_version"] != body["room_version"] {
			t.Errorf("GET %s: %v", path, body)
		}
		if r := n.Do(t, "GET", path, bob.AccessToken, nil); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
			t.Errorf("GET %s as a stranger: %d %s, want 404 M_NOT_FOUND", path, r.Status, r.Body)
		}
	}
}

func equal(a, b []id.RoomID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
