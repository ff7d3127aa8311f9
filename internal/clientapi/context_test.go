package clientapi_test

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// chat creates a room where alice and bob talk, with n numbered messages
// from alice a few milliseconds apart.
func chat(t *testing.T, n *testnode.Node, count int) (alice, bob *mautrix.Client, room id.RoomID, msgs []id.EventID) {
	t.Helper()
	alice, bob = n.Register("alice"), n.Register("bob")
	room = testnode.PublicRoom(t, alice, bob)
	for i := range count {
		msgs = append(msgs, send(t, alice, room, event.EventMessage, text(string(rune('0'+i)))))
		time.Sleep(3 * time.Millisecond)
	}
	return alice, bob, room, msgs
}

func TestContext(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, room, msgs := chat(t, n, 9)
		eve := n.Register("eve")

		cx, err := bob.Context(ctx, room, msgs[4], nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		if cx.Event.ID != msgs[4] {
			t.Fatalf("event %s, want %s", cx.Event.ID, msgs[4])
		}
		if got, want := ids(cx.EventsBefore), []id.EventID{msgs[3], msgs[2]}; !slices.Equal(got, want) {
			t.Fatalf("events_before %v, want %v", got, want)
		}
		if got, want := ids(cx.EventsAfter), []id.EventID{msgs[5], msgs[6]}; !slices.Equal(got, want) {
			t.Fatalf("events_after %v, want %v", got, want)
		}
		members := 0
		for _, st := range cx.State {
			if st.Type == event.StateMember {
				members++
			}
		}
		if members != 2 {
			t.Fatalf("state should hold both members, has %d", members)
		}
		// The tokens continue with /messages on either side.
		back, err := bob.Messages(ctx, room, cx.Start, "", mautrix.DirectionBackward, nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(back.Chunk), []id.EventID{msgs[1], msgs[0]}; !slices.Equal(got, want) {
			t.Fatalf("messages before start: %v, want %v", got, want)
		}
		fwd, err := bob.Messages(ctx, room, cx.End, "", mautrix.DirectionForward, nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ids(fwd.Chunk), []id.EventID{msgs[7], msgs[8]}; !slices.Equal(got, want) {
			t.Fatalf("messages after end: %v, want %v", got, want)
		}
		// limit 0 still returns the event.
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/context/" + url.PathEscape(string(msgs[4]))
		body := testnode.Call(t, bob, "GET", path+"?limit=0", nil).Want(t, 200, "").Body
		zero := testnode.Decode[mautrix.RespContext](t, body)
		if zero.Event.ID != msgs[4] || len(zero.EventsBefore)+len(zero.EventsAfter) != 0 {
			t.Fatalf("limit 0: %s", body)
		}
		// Filters apply to the context and the state; lazy loading keeps
		// only the senders' members.
		cx, err = bob.Context(ctx, room, msgs[4], &mautrix.FilterPart{LazyLoadMembers: true}, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range cx.State {
			if st.Type == event.StateMember && st.GetStateKey() != alice.UserID.String() && st.GetStateKey() != bob.UserID.String() {
				t.Fatalf("unexpected member %s", st.GetStateKey())
			}
		}
		cx, err = bob.Context(ctx, room, msgs[4], &mautrix.FilterPart{NotTypes: []event.Type{event.EventMessage}}, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(cx.EventsBefore)+len(cx.EventsAfter) != 0 || cx.Event.ID != msgs[4] {
			t.Fatalf("filtered context: %d before, %d after", len(cx.EventsBefore), len(cx.EventsAfter))
		}

		// Bad input.
		_, err = bob.Context(ctx, room, "$missing", nil, 4)
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
		testnode.Call(t, bob, "GET", path+"?limit=x", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, bob, "GET", path+"?"+url.Values{"filter": {"{not json"}}.Encode(), nil).Want(t, 400, "M_INVALID_PARAM")
		_, err = eve.Context(ctx, room, msgs[4], nil, 4)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
	})
}

func TestTimestampToEvent(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		_, bob, room, msgs := chat(t, n, 5)
		ev, err := bob.GetEvent(ctx, room, msgs[2])
		if err != nil {
			t.Fatal(err)
		}
		ts := ev.Timestamp
		for _, tc := range []struct {
			ts   int64
			dir  mautrix.Direction
			want id.EventID
		}{
			{ts, mautrix.DirectionForward, msgs[2]},
			{ts, mautrix.DirectionBackward, msgs[2]},
			{ts + 1, mautrix.DirectionForward, msgs[3]},
			{ts - 1, mautrix.DirectionBackward, msgs[1]},
		} {
			resp, err := bob.TimestampToEvent(ctx, room, time.UnixMilli(tc.ts), tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			if resp.EventID != tc.want {
				t.Errorf("ts %d dir %c: %s, want %s", tc.ts, tc.dir, resp.EventID, tc.want)
			}
		}
		path := "/_matrix/client/v1/rooms/" + url.PathEscape(string(room)) + "/timestamp_to_event"
		testnode.Call(t, bob, "GET", path+"?ts=0&dir=f", nil).OK(t)
		_, err = bob.TimestampToEvent(ctx, room, time.UnixMilli(ts+3600_000), mautrix.DirectionForward)
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
		_, err = bob.TimestampToEvent(ctx, room, time.UnixMilli(1), mautrix.DirectionBackward)
		testnode.WantErr(t, err, "M_NOT_FOUND", 0)
		for _, tc := range []struct {
			q    url.Values
			code string
		}{
			{url.Values{"ts": {"1"}, "dir": {"x"}}, "M_INVALID_PARAM"},
			{url.Values{"ts": {"soon"}, "dir": {"f"}}, "M_INVALID_PARAM"},
			{url.Values{"dir": {"f"}}, "M_MISSING_PARAM"},
			{url.Values{"ts": {"1"}}, "M_MISSING_PARAM"},
		} {
			testnode.Call(t, bob, "GET", path+"?"+tc.q.Encode(), nil).Want(t, 400, tc.code)
		}
		eve := n.Register("eve")
		_, err = eve.TimestampToEvent(ctx, room, time.UnixMilli(ts), mautrix.DirectionForward)
		testnode.WantErr(t, err, "M_FORBIDDEN", 0)
	})
}

// TestMessagesEnd checks that a /messages page that read events carries an
// end token, also when it reached the start of the room or its filter left
// fewer events than the limit (Complement's TestRoomImageRoundtrip), and that
// the page after the start has neither events nor end.
func TestMessagesEnd(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		_, bob, room, msgs := chat(t, n, 3)
		path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/messages?dir=b"
		filter := url.QueryEscape(`{"types":["m.room.message"]}`)
		page := testnode.Decode[mautrix.RespMessages](t, testnode.Call(t, bob, "GET", path+"&limit=100&filter="+filter, nil).Want(t, 200, "").Body)
		if got, want := ids(page.Chunk), []id.EventID{msgs[2], msgs[1], msgs[0]}; !slices.Equal(got, want) {
			t.Fatalf("chunk %v, want %v", got, want)
		}
		if page.End == "" {
			t.Fatal("a page that read events has no end")
		}
		res := testnode.Call(t, bob, "GET", path+"&limit=100&from="+url.QueryEscape(page.End), nil).Want(t, 200, "")
		body, rest := res.Body, res.JSON(t)
		if chunk, _ := rest["chunk"].([]any); len(chunk) != 0 {
			t.Fatalf("page before the room's first event: %s", body)
		}
		if _, ok := rest["end"]; ok {
			t.Fatalf("the page past the start has an end: %s", body)
		}
	})
}
