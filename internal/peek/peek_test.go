package peek_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// get sends a GET with the query and token and returns the answer's status
// and body.
func get(t *testing.T, n *testnode.Node, path string, q url.Values, token string) (int, []byte) {
	t.Helper()
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	r := n.Do(t, "GET", path, token, nil)
	return r.Status, r.Body
}

type roomInfo struct {
	RoomID     id.RoomID `json:"room_id"`
	Membership string    `json:"membership"`
	Visibility string    `json:"visibility"`
	Messages   struct {
		Start, End string
		Chunk      []event.Event
	} `json:"messages"`
	State []event.Event `json:"state"`
}

type eventsPage struct {
	Start, End string
	Chunk      []event.Event
}

func TestInitialSync(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "r", Preset: "public_chat", Visibility: "public"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		var sent []id.EventID
		for _, b := range []string{"one", "two", "three"} {
			sent = append(sent, testnode.SendText(t, alice, room.RoomID, b))
		}
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room.RoomID)) + "/initialSync"
		st, body := get(t, n, path, nil, bob.AccessToken)
		info := testnode.Decode[roomInfo](t, body)
		if st != 200 || info.RoomID != room.RoomID || info.Membership != "join" || info.Visibility != "public" || len(info.State) < 5 {
			t.Fatalf("initialSync: %d %s", st, body)
		}
		chunk := info.Messages.Chunk
		if len(chunk) < 3 || chunk[len(chunk)-1].ID != sent[2] || chunk[len(chunk)-3].ID != sent[0] || info.Messages.End == "" {
			t.Fatalf("messages: %s", body)
		}
		// The end token continues with /messages... and /events.
		st, body = get(t, n, "/_matrix/client/v3/events", url.Values{"room_id": {string(room.RoomID)}, "from": {info.Messages.End}, "timeout": {"0"}}, bob.AccessToken)
		if p := testnode.Decode[eventsPage](t, body); st != 200 || len(p.Chunk) != 0 {
			t.Fatalf("events after end: %d %s", st, body)
		}
		// Bob leaves; he sees the room as it was.
		if _, err := bob.LeaveRoom(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		testnode.SendText(t, alice, room.RoomID, "after bob left")
		_, body = get(t, n, path, nil, bob.AccessToken)
		info = testnode.Decode[roomInfo](t, body)
		if info.Membership != "leave" {
			t.Fatalf("after leaving: %s", body)
		}
		var seen []id.EventID
		for _, ev := range info.Messages.Chunk {
			if ev.Content.Raw["body"] == "after bob left" {
				t.Fatalf("bob sees a message sent after he left")
			}
			seen = append(seen, ev.ID)
		}
		if !slices.Contains(seen, sent[2]) {
			t.Fatalf("bob no longer sees the messages from before he left: %s", body)
		}
		// Carol never joined this shared-history room.
		st, body = get(t, n, path, nil, carol.AccessToken)
		if st != 403 {
			t.Fatalf("carol: %d %s", st, body)
		}
	})
}

func TestPeekEvents(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, carol := n.Register("alice"), n.Register("carol")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat",
		InitialState: []*event.Event{{Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "world_readable"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	private, _ := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	const path = "/_matrix/client/v3/events"
	q := url.Values{"room_id": {string(room.RoomID)}, "timeout": {"0"}}

	// Carol peeks into the world-readable room: an empty batch at first.
	st, body := get(t, n, path, q, carol.AccessToken)
	first := testnode.Decode[eventsPage](t, body)
	if st != 200 || len(first.Chunk) != 0 || first.End == "" {
		t.Fatalf("first peek: %d %s", st, body)
	}
	// A long-poll wakes when Alice sends.
	done := make(chan eventsPage, 1)
	go func() {
		q := url.Values{"room_id": {string(room.RoomID)}, "timeout": {"10000"}, "from": {first.End}}
		_, body := get(t, n, path, q, carol.AccessToken)
		var p eventsPage
		json.Unmarshal(body, &p)
		done <- p
	}()
	time.Sleep(100 * time.Millisecond)
	sent, _ := alice.SendText(ctx, room.RoomID, "hello peekers")
	select {
	case p := <-done:
		if len(p.Chunk) != 1 || p.Chunk[0].ID != sent.EventID || p.Start != first.End || p.End == first.End {
			t.Fatalf("long-poll: %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll did not wake")
	}
	// A timeout with nothing new answers an empty chunk.
	q2 := url.Values{"room_id": {string(room.RoomID)}, "timeout": {"50"}, "from": {first.End}}
	q2.Set("from", testnode.Decode[eventsPage](t, mustGet(t, n, path, url.Values{"room_id": {string(room.RoomID)}, "timeout": {"0"}}, carol.AccessToken)).End)
	if st, body := get(t, n, path, q2, carol.AccessToken); st != 200 || len(testnode.Decode[eventsPage](t, body).Chunk) != 0 {
		t.Fatalf("timeout: %d %s", st, body)
	}
	// Not in a private room, and room_id is required.
	if st, _ := get(t, n, path, url.Values{"room_id": {string(private.RoomID)}, "timeout": {"0"}}, carol.AccessToken); st != 403 {
		t.Fatalf("private room peek: %d", st)
	}
	if st, _ := get(t, n, path, url.Values{"timeout": {"0"}}, carol.AccessToken); st != 400 {
		t.Fatalf("no room_id: %d", st)
	}
	if st, _ := get(t, n, path, url.Values{"room_id": {string(room.RoomID)}, "from": {"bogus"}}, carol.AccessToken); st != 400 {
		t.Fatalf("bad from: %d", st)
	}
}

func mustGet(t *testing.T, n *testnode.Node, path string, q url.Values, token string) []byte {
	t.Helper()
	st, body := get(t, n, path, q, token)
	if st != 200 {
		t.Fatalf("GET %s: %d %s", path, st, body)
	}
	return body
}
