package search_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

func search(t *testing.T, n *testnode.Node, c *mautrix.Client, body map[string]any) map[string]any {
	t.Helper()
	out := n.Do(t, "POST", "/_matrix/client/v3/search", c.AccessToken, body).OK(t)
	return out["search_categories"].(map[string]any)["room_events"].(map[string]any)
}

func TestSearch(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, eve := n.Register("alice"), n.Register("bob"), n.Register("eve")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Garden talk", Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		bob.JoinRoomByID(ctx, room.RoomID)
		secret, _ := eve.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		eve.SendText(ctx, secret.RoomID, "tomato secret plan")
		alice.SendText(ctx, room.RoomID, "the tomato plants are growing")
		alice.SendText(ctx, room.RoomID, "tomato tomato tomato soup")
		bob.SendText(ctx, room.RoomID, "I prefer potatoes")
		gone, _ := alice.SendText(ctx, room.RoomID, "tomato to be redacted")
		alice.RedactEvent(ctx, room.RoomID, gone.EventID)

		res := search(t, n, bob, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
			"search_term": "tomato", "order_by": "rank",
			"event_context": map[string]any{"before_limit": 1, "after_limit": 1, "include_profile": true},
			"groupings":     map[string]any{"group_by": []map[string]string{{"key": "room_id"}}},
		}}})
		results := res["results"].([]any)
		if len(results) != 2 {
			t.Fatalf("want 2 results (not eve's room, not the redacted one), got %d: %v", len(results), res)
		}
		first := results[0].(map[string]any)["result"].(map[string]any)["content"].(map[string]any)["body"]
		if first != "tomato tomato tomato soup" {
			t.Errorf("rank order: first result %q", first)
		}
		if _, ok := results[0].(map[string]any)["context"].(map[string]any)["events_before"]; !ok {
			t.Errorf("no event context")
		}
		res = search(t, n, bob, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
			"search_term": "tomato", "order_by": "recent", "filter": map[string]any{"limit": 1}}}})
		if len(res["results"].([]any)) != 1 || res["next_batch"] == nil {
			t.Fatalf("pagination: %v", res)
		}
		res = search(t, n, bob, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
			"search_term": "garden", "keys": []string{"content.name"}}}})
		if len(res["results"].([]any)) != 1 {
			t.Fatalf("room name search: %v", res)
		}
	})
}

func TestUserDirectory(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob, carol, dave := n.Register("alice"), n.Register("bob"), n.Register("carol"), n.Register("dave")
	bob.SetDisplayName(ctx, "Bobby Tables")
	room, _ := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
	bob.JoinRoomByID(ctx, room.RoomID)
	pub, _ := carol.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	_ = pub
	dave.CreateRoom(ctx, &mautrix.ReqCreateRoom{}) // dave is in no shared or public room
	res, err := alice.SearchUserDirectory(ctx, "tables", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].UserID != bob.UserID {
		t.Fatalf("display name search: %+v", res.Results)
	}
	res, _ = alice.SearchUserDirectory(ctx, "carol", 10)
	if len(res.Results) != 1 {
		t.Fatalf("public room member not found: %+v", res.Results)
	}
	res, _ = alice.SearchUserDirectory(ctx, "dave", 10)
	if len(res.Results) != 0 {
		t.Fatalf("dave shares no room and is in no public room: %+v", res.Results)
	}
}

// TestPurgeEmptiesIndex: purging a room removes its messages from the
// search index too (the index holds message text).
func TestPurgeEmptiesIndex(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "secret garden"})
		if err != nil {
			t.Fatal(err)
		}
		alice.SendText(ctx, room.RoomID, "the password is tomato")
		count := func() int {
			var c int
			if err := n.DB.QueryRow(ctx, "SELECT COUNT(*) FROM search_events WHERE room_id = $1", room.RoomID).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		if count() == 0 {
			t.Fatal("nothing indexed")
		}
		if err := n.Rooms.Purge(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		if c := count(); c != 0 {
			t.Fatalf("%d indexed messages left after purge", c)
		}
	})
}
