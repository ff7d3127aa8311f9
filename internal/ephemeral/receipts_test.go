package ephemeral_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func sendText(t *testing.T, c *mautrix.Client, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := c.SendText(context.Background(), roomID, body)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return resp.EventID
}

type readCall struct {
	user   id.UserID
	room   id.RoomID
	thread string
	pos    int64
}

func TestReceipts(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol, roomID := setup(t, n)
		reads := make(chan readCall, 16)
		onRead := n.Ephemeral.OnRead
		n.Ephemeral.OnRead = func(ctx context.Context, user id.UserID, roomID id.RoomID, thread string, pos int64) {
			reads <- readCall{user, roomID, thread, pos}
			onRead(ctx, user, roomID, thread, pos)
		}
		msg1 := sendText(t, alice, roomID, "one")
		msg2 := sendText(t, alice, roomID, "two")
		msg3 := sendText(t, alice, roomID, "three")
		since := testnode.SyncOnce(t, alice, "", 0).NextBatch

		// A public receipt reaches the other member's long-poll.
		ch := pollUntil(alice, since, func(s *mautrix.RespSync) bool {
			return receipt(s, roomID, msg2, "m.read", bob.UserID) != nil
		})
		time.Sleep(50 * time.Millisecond)
		if err := bob.SendReceipt(ctx, roomID, msg2, event.ReceiptTypeRead, nil); err != nil {
			t.Fatalf("receipt: %v", err)
		}
		s := await(t, "public receipt", ch)
		if info := receipt(s, roomID, msg2, "m.read", bob.UserID); info["ts"] == nil || info["thread_id"] != nil {
			t.Fatalf("receipt info %v", info)
		}
		select {
		case rc := <-reads:
			if rc.user != bob.UserID || rc.room != roomID || rc.thread != "" || rc.pos <= 0 {
				t.Fatalf("OnRead got %+v", rc)
			}
		case <-time.After(time.Second):
			t.Fatal("OnRead was not called")
		}

		// A private receipt is only synced to its owner.
		if err := bob.SendReceipt(ctx, roomID, msg3, event.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatalf("private receipt: %v", err)
		}
		if hasReceiptType(testnode.SyncOnce(t, alice, s.NextBatch, 0), "m.read.private") || hasReceiptType(testnode.SyncOnce(t, alice, "", 0), "m.read.private") {
			t.Fatal("alice sees bob's private receipt")
		}
		if receipt(testnode.SyncOnce(t, bob, "", 0), roomID, msg3, "m.read.private", bob.UserID) == nil {
			t.Fatal("bob does not see his own private receipt")
		}

		// Receipts never move backwards.
		if err := bob.SendReceipt(ctx, roomID, msg1, event.ReceiptTypeRead, nil); err != nil {
			t.Fatalf("older receipt: %v", err)
		}
		s = testnode.SyncOnce(t, alice, "", 0)
		if receipt(s, roomID, msg1, "m.read", bob.UserID) != nil || receipt(s, roomID, msg2, "m.read", bob.UserID) == nil {
			t.Fatal("receipt moved backwards")
		}

		// Threaded receipts.
		reply, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]any{
			"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": msg1},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.SendReceipt(ctx, roomID, msg3, event.ReceiptTypeRead, &mautrix.ReqSendReceipt{ThreadID: "main"}); err != nil {
			t.Fatalf("main-thread receipt: %v", err)
		}
		if err := bob.SendReceipt(ctx, roomID, reply.EventID, event.ReceiptTypeRead, &mautrix.ReqSendReceipt{ThreadID: string(msg1)}); err != nil {
			t.Fatalf("thread receipt: %v", err)
		}
		s = testnode.SyncOnce(t, alice, "", 0)
		if info := receipt(s, roomID, msg3, "m.read", bob.UserID); info["thread_id"] != "main" {
			t.Fatalf("main-thread receipt: %v", info)
		}
		if info := receipt(s, roomID, reply.EventID, "m.read", bob.UserID); info["thread_id"] != string(msg1) {
			t.Fatalf("thread receipt: %v", info)
		}
		if receipt(s, roomID, msg2, "m.read", bob.UserID) == nil {
			t.Fatal("threaded receipts replaced the unthreaded one")
		}
		validateSyncEvents(t, alice)

		other, err := carol.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		elsewhere := sendText(t, carol, other.RoomID, "elsewhere")
		path := func(rtype string, ev id.EventID) string {
			return fmt.Sprintf("/rooms/%s/receipt/%s/%s", url.PathEscape(string(roomID)), url.PathEscape(rtype), url.PathEscape(string(ev)))
		}
		for _, tc := range []struct {
			name string
			c    *mautrix.Client
			path string
			body string
			code string
		}{
			{"unknown type", bob, path("m.bogus", msg1), `{}`, "M_INVALID_PARAM"},
			{"empty thread_id", bob, path("m.read", msg3), `{"thread_id":""}`, "M_INVALID_PARAM"},
			{"thread_id not a string", bob, path("m.read", msg3), `{"thread_id":5}`, "M_INVALID_PARAM"},
			{"thread_id on m.fully_read", bob, path("m.fully_read", msg3), `{"thread_id":"main"}`, "M_INVALID_PARAM"},
			{"threaded event under main", bob, path("m.read", reply.EventID), `{"thread_id":"main"}`, "M_INVALID_PARAM"},
			{"threaded event under another thread", bob, path("m.read", reply.EventID), fmt.Sprintf(`{"thread_id":%q}`, msg2), "M_INVALID_PARAM"},
			{"unknown event", bob, path("m.read", "$nope"), `{}`, "M_NOT_FOUND"},
			{"event of another room", bob, path("m.read", elsewhere), `{}`, "M_NOT_FOUND"},
			{"not joined", carol, path("m.read", msg3), `{}`, "M_FORBIDDEN"},
			{"not an object", bob, path("m.read", msg3), `[]`, "M_BAD_JSON"},
		} {
			res := testnode.Call(t, tc.c, "POST", testnode.V3+tc.path, tc.body)
			if res.ErrCode() != tc.code || res.Status < 400 {
				t.Errorf("%s: got %d %s, want %s", tc.name, res.Status, res.Body, tc.code)
			}
		}
	})
}

func TestReadMarkers(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol, roomID := setup(t, n)
		msg1 := sendText(t, alice, roomID, "one")
		msg2 := sendText(t, alice, roomID, "two")
		msg3 := sendText(t, alice, roomID, "three")
		bobSince := testnode.SyncOnce(t, bob, "", 0).NextBatch

		if err := bob.SetReadMarkers(ctx, roomID, map[string]any{"m.fully_read": msg2, "m.read": msg2}); err != nil {
			t.Fatalf("read markers: %v", err)
		}
		fullyRead := func() id.EventID {
			t.Helper()
			var c struct {
				EventID id.EventID `json:"event_id"`
			}
			if err := bob.GetRoomAccountData(ctx, roomID, "m.fully_read", &c); err != nil {
				t.Fatalf("get m.fully_read: %v", err)
			}
			return c.EventID
		}
		if got := fullyRead(); got != msg2 {
			t.Fatalf("m.fully_read at %s, want %s", got, msg2)
		}
		s := testnode.SyncOnce(t, bob, bobSince, 0)
		if c := testnode.EventContent(s.Rooms.Join[roomID].AccountData.Events, "m.fully_read"); c["event_id"] != string(msg2) {
			t.Fatalf("m.fully_read not synced: %+v", s.Rooms.Join[roomID])
		}
		if receipt(testnode.SyncOnce(t, alice, "", 0), roomID, msg2, "m.read", bob.UserID) == nil {
			t.Fatal("read marker's m.read not visible to alice")
		}
		// The marker does not move backwards.
		if err := bob.SetReadMarkers(ctx, roomID, map[string]any{"m.fully_read": msg1}); err != nil {
			t.Fatal(err)
		}
		if got := fullyRead(); got != msg2 {
			t.Fatalf("m.fully_read moved back to %s", got)
		}
		// The receipt endpoint sets it too, and private receipts stay private.
		if err := bob.SendReceipt(ctx, roomID, msg3, "m.fully_read", nil); err != nil {
			t.Fatal(err)
		}
		if got := fullyRead(); got != msg3 {
			t.Fatalf("m.fully_read at %s after receipt, want %s", got, msg3)
		}
		if err := bob.SetReadMarkers(ctx, roomID, map[string]any{"m.read.private": msg3}); err != nil {
			t.Fatal(err)
		}
		if hasReceiptType(testnode.SyncOnce(t, alice, "", 0), "m.read.private") {
			t.Fatal("alice sees bob's private receipt")
		}
		if receipt(testnode.SyncOnce(t, bob, "", 0), roomID, msg3, "m.read.private", bob.UserID) == nil {
			t.Fatal("bob's private receipt missing")
		}

		other, err := carol.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		elsewhere := sendText(t, carol, other.RoomID, "elsewhere")
		path := fmt.Sprintf("/rooms/%s/read_markers", url.PathEscape(string(roomID)))
		for _, tc := range []struct {
			name string
			c    *mautrix.Client
			body string
			code string
		}{
			{"marker not a string", bob, `{"m.fully_read": 1}`, "M_BAD_JSON"},
			{"unknown event", bob, `{"m.fully_read": "$nope"}`, "M_NOT_FOUND"},
			{"event of another room", bob, fmt.Sprintf(`{"m.read": %q}`, elsewhere), "M_NOT_FOUND"},
			{"not joined", carol, fmt.Sprintf(`{"m.fully_read": %q}`, msg1), "M_FORBIDDEN"},
			{"not JSON", bob, `{`, "M_NOT_JSON"},
		} {
			res := testnode.Call(t, tc.c, "POST", testnode.V3+path, tc.body)
			if res.ErrCode() != tc.code || res.Status < 400 {
				t.Errorf("%s: got %d %s, want %s", tc.name, res.Status, res.Body, tc.code)
			}
		}
	})
}

// TestUnthreadedReceiptWinsClash: a user's unthreaded and threaded read
// receipts on the same event are sent as the unthreaded one, whichever came
// last (matrix-spec#1727; Complement's TestThreadReceiptsInSyncMSC4102).
func TestUnthreadedReceiptWinsClash(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, _, roomID := setup(t, n)
		root := sendText(t, alice, roomID, "root")
		for i, threadedFirst := range []bool{false, true} {
			res, err := alice.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]any{
				"msgtype": "m.text", "body": fmt.Sprintf("reply %d", i),
				"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
			})
			if err != nil {
				t.Fatal(err)
			}
			threaded := &mautrix.ReqSendReceipt{ThreadID: string(root)}
			unthreaded := &mautrix.ReqSendReceipt{}
			order := []*mautrix.ReqSendReceipt{unthreaded, threaded}
			if threadedFirst {
				order = []*mautrix.ReqSendReceipt{threaded, unthreaded}
			}
			for _, req := range order {
				if err := bob.SendReceipt(ctx, roomID, res.EventID, event.ReceiptTypeRead, req); err != nil {
					t.Fatalf("receipt %+v: %v", req, err)
				}
			}
			s := testnode.SyncOnce(t, bob, "", 0)
			info := receipt(s, roomID, res.EventID, "m.read", bob.UserID)
			if info == nil || info["thread_id"] != nil {
				t.Fatalf("threaded first %v: receipt %v, want the unthreaded one", threadedFirst, info)
			}
		}
	})
}
