package search_test

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
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
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Name: "Garden talk", Invite: []id.UserID{bob.UserID}})
		testnode.Join(t, bob, room)
		secret := testnode.CreateRoom(t, eve, &mautrix.ReqCreateRoom{})
		testnode.SendText(t, eve, secret, "tomato secret plan")
		testnode.SendText(t, alice, room, "the tomato plants are growing")
		testnode.SendText(t, alice, room, "tomato tomato tomato soup")
		testnode.SendText(t, bob, room, "I prefer potatoes")
		gone := testnode.SendText(t, alice, room, "tomato to be redacted")
		// Eve's message and the one to be redacted are found by those who
		// may see them, so their absence below is the search's doing.
		tomato := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "tomato"}}}
		if res := search(t, n, eve, tomato); len(res["results"].([]any)) != 1 {
			t.Fatalf("eve does not find her own message: %v", res)
		}
		if res := search(t, n, bob, tomato); len(res["results"].([]any)) != 3 {
			t.Fatalf("bob does not find the three tomato messages before the redaction: %v", res)
		}
		if _, err := alice.RedactEvent(ctx, room, gone); err != nil {
			t.Fatal(err)
		}

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

// indexed returns how many of the room's events the search index holds.
func indexed(t *testing.T, n *testnode.Node, room id.RoomID) int {
	t.Helper()
	var c int
	if err := n.Search.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM search_events WHERE room_id = $1", room).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
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
		testnode.SendText(t, alice, room.RoomID, "the password is tomato")
		count := func() int { return indexed(t, n, room.RoomID) }
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

// TestSearchPaginates: results page backwards by next_batch; a full page
// carries next_batch even when it ends at the last match, and the page
// after that is empty with none. Mirrors Complement's TestSearch
// "Can back-paginate search results" and "Can get context around search
// results".
func TestSearchPaginates(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	sent := make([]id.EventID, 20)
	for i := range sent {
		sent[i] = testnode.SendText(t, alice, room, fmt.Sprintf("Message number %d", i))
	}
	body := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
		"search_term": "message", "order_by": "recent", "filter": map[string]any{"limit": 10, "rooms": []id.RoomID{room}}}}}
	page := func(nextBatch string) map[string]any {
		t.Helper()
		path := "/_matrix/client/v3/search"
		if nextBatch != "" {
			path += "?next_batch=" + nextBatch
		}
		out := n.Do(t, "POST", path, alice.AccessToken, body).OK(t)
		return out["search_categories"].(map[string]any)["room_events"].(map[string]any)
	}
	eventID := func(res map[string]any, i int) any {
		return res["results"].([]any)[i].(map[string]any)["result"].(map[string]any)["event_id"]
	}
	next := ""
	for _, want := range [][2]int{{19, 10}, {9, 0}} {
		res := page(next)
		if res["count"] != 20.0 || len(res["results"].([]any)) != 10 {
			t.Fatalf("page after %q: count %v, %d results, want 20 and 10", next, res["count"], len(res["results"].([]any)))
		}
		if eventID(res, 0) != sent[want[0]].String() || eventID(res, 9) != sent[want[1]].String() {
			t.Fatalf("page after %q runs %v..%v, want messages %d..%d", next, eventID(res, 0), eventID(res, 9), want[0], want[1])
		}
		nb, ok := res["next_batch"].(string)
		if !ok || nb == "" {
			t.Fatalf("full page after %q has no next_batch: %v", next, res["next_batch"])
		}
		next = nb
	}
	last := page(next)
	if len(last["results"].([]any)) != 0 || last["next_batch"] != nil {
		t.Fatalf("page after the last match: %v, want no results and no next_batch", last)
	}
}

// TestSearchSkipsRejected: a message that the full state of a room joined
// with partial state rejected stays in the events table, marked rejected
// (rooms/partial.go), and in the search index; /search must not show it,
// as /event and the timeline do not.
func TestSearchSkipsRejected(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		testnode.SendText(t, alice, room, "tomato kept")
		refused := testnode.SendText(t, alice, room, "tomato refused")
		// What a resync writes for a refused event; a restart empties the
		// event cache, as the resync drops the event from it.
		if err := n.DB.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE events SET rejected = TRUE WHERE event_id = $1", refused)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		n = n.Restart()
		res := search(t, n, alice, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "tomato"}}})
		for _, r := range res["results"].([]any) {
			if eid := r.(map[string]any)["result"].(map[string]any)["event_id"]; eid == refused.String() {
				t.Errorf("/search shows the rejected event %s: %v", refused, res)
			}
		}
		if got := len(res["results"].([]any)); got != 1 {
			t.Errorf("%d results, want the kept message only: %v", got, res)
		}
	})
}

// TestIndexCatchesUpFromItsMark: the index follows the events from a
// durable mark, so what it had not indexed when the node stopped (here: a
// mark moved back and the index emptied) is indexed after a restart, once
// and exactly; a redaction met on the way takes its target out again.
func TestIndexCatchesUpFromItsMark(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		for i := range 5 {
			testnode.SendText(t, alice, room, fmt.Sprintf("pumpkin number %d", i))
		}
		gone := testnode.SendText(t, alice, room, "pumpkin to be redacted")
		if _, err := alice.RedactEvent(ctx, room, gone); err != nil {
			t.Fatal(err)
		}
		if c := indexed(t, n, room); c != 5 {
			t.Fatalf("indexed %d messages, want 5", c)
		}
		if err := n.DB.Write(ctx, func(tx *storage.Tx) error {
			for _, q := range []string{"DELETE FROM search_events", "UPDATE search_marks SET pos = 0"} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			if tx.Dialect() == storage.SQLite {
				_, err := tx.Exec(ctx, "INSERT INTO search_fts (search_fts) VALUES ('delete-all')")
				return err
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		n = n.Restart()
		alice = n.Login(alice.UserID)
		res := search(t, n, alice, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "pumpkin"}}})
		if got := len(res["results"].([]any)); got != 5 {
			t.Fatalf("after a restart found %d messages, want 5: %v", got, res)
		}
		if c := indexed(t, n, room); c != 5 {
			t.Fatalf("indexed %d messages after catching up again, want 5", c)
		}
	})
}

// TestIndexSkipsEventRejectedSinceRead: the follower reads the committed
// events, then writes their index rows; an event a partial-state re-check
// rejects in between (its OnReject hook has nothing to unindex yet) must
// not be indexed by that write. The stale read is the follower's view
// from before the event was rejected: here the engine's memory of the
// newest events, which a direct update of the events table leaves alone.
func TestIndexSkipsEventRejectedSinceRead(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		testnode.SendText(t, alice, room, "tomato kept")
		refused := testnode.SendText(t, alice, room, "tomato refused")
		if c := indexed(t, n, room); c != 2 {
			t.Fatalf("indexed %d messages, want 2", c)
		}
		// The index as it was before the refused event was indexed, and the
		// event rejected: the follower reads it again (from memory) and
		// writes after the rejection.
		var pos int64
		if err := n.DB.QueryRow(ctx, "SELECT pos FROM events WHERE event_id = $1", refused).Scan(&pos); err != nil {
			t.Fatal(err)
		}
		if err := n.DB.Write(ctx, func(tx *storage.Tx) error {
			if tx.Dialect() == storage.SQLite {
				if _, err := tx.Exec(ctx, "DELETE FROM search_fts WHERE rowid = $1", pos); err != nil {
					return err
				}
			}
			for _, q := range []string{"DELETE FROM search_events WHERE pos = $1", "UPDATE events SET rejected = TRUE WHERE pos = $1"} {
				if _, err := tx.Exec(ctx, q, pos); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := n.Search.SetMark(ctx, pos-1); err != nil {
			t.Fatal(err)
		}
		if c := indexed(t, n, room); c != 1 {
			t.Fatalf("indexed %d messages after the rejection, want 1 (the rejected one indexed again)", c)
		}
	})
}

// TestRefusedRedactionIndexesTarget: a redaction applied while a room's
// state was partial that the full state refuses gives its target back
// (rooms/partial.go restores it and marks the redaction rejected in one
// write, then runs the OnReject hooks): the target is searchable again,
// and the follower, reading the redaction again from before its
// rejection, does not take it out once more.
func TestRefusedRedactionIndexesTarget(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		target := testnode.SendText(t, alice, room, "tomato given back")
		var original string
		if err := n.DB.QueryRow(ctx, "SELECT json FROM events WHERE event_id = $1", target).Scan(&original); err != nil {
			t.Fatal(err)
		}
		resp, err := alice.RedactEvent(ctx, room, target)
		if err != nil {
			t.Fatal(err)
		}
		if c := indexed(t, n, room); c != 0 {
			t.Fatalf("indexed %d messages after the redaction, want 0", c)
		}
		red, err := n.Rooms.Event(ctx, resp.EventID)
		if err != nil {
			t.Fatal(err)
		}
		// What the resync writes for the refused redaction.
		if err := n.DB.Write(ctx, func(tx *storage.Tx) error {
			if _, err := tx.Exec(ctx, "UPDATE events SET rejected = TRUE WHERE event_id = $1", red.ID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE events SET json = $1, redacted_by = NULL WHERE event_id = $2", original, target); err != nil {
				return err
			}
			return n.Search.Reject(ctx, tx, red)
		}); err != nil {
			t.Fatal(err)
		}
		if err := n.Search.SetMark(ctx, red.Pos-1); err != nil {
			t.Fatal(err)
		}
		if c := indexed(t, n, room); c != 1 {
			t.Fatalf("indexed %d messages after the redaction was refused, want 1", c)
		}
		res := search(t, n, alice, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "tomato"}}})
		if got := len(res["results"].([]any)); got != 1 {
			t.Errorf("%d results, want the message given back: %v", got, res)
		}
	})
}
