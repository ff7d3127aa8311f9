package threadsubs_test

import (
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

func subPath(room id.RoomID, thread id.EventID) string {
	return "/_matrix/client/unstable/io.element.msc4306/rooms/" + url.PathEscape(string(room)) +
		"/thread/" + url.PathEscape(string(thread)) + "/subscription"
}

func reply(t *testing.T, c *mautrix.Client, room id.RoomID, root id.EventID) id.EventID {
	t.Helper()
	res, err := c.SendMessageEvent(t.Context(), room, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "reply", "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res.EventID
}

// TestThreadSubscriptions mirrors Complement's msc4306 TestThreadSubscriptions:
// manual and automatic subscriptions, a manual one replacing an automatic
// one, cause events that are not in the thread (400 M_NOT_IN_THREAD),
// unknown threads (404), unsubscribing without a subscription, and an
// automatic subscription whose cause precedes the user's unsubscription
// (409 M_CONFLICTING_UNSUBSCRIPTION).
func TestThreadSubscriptions(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, eve := n.Register("alice"), n.Register("eve")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		root := testnode.SendText(t, alice, room, "root")
		path := subPath(room, root)

		testnode.Call(t, alice, "GET", path, nil).Want(t, 404, "M_NOT_FOUND")
		testnode.Call(t, alice, "DELETE", path, nil).Want(t, 200, "")
		testnode.Call(t, alice, "PUT", path, map[string]any{}).Want(t, 200, "")
		if got := testnode.Call(t, alice, "GET", path, nil).Want(t, 200, "").JSON(t); got["automatic"] != false {
			t.Fatalf("manual subscription: %v", got)
		}
		testnode.Call(t, alice, "DELETE", path, nil).Want(t, 200, "")
		testnode.Call(t, alice, "GET", path, nil).Want(t, 404, "M_NOT_FOUND")

		// Causes: the root itself and another thread's reply are not in the thread.
		otherRoot := testnode.SendText(t, alice, room, "other root")
		otherReply := reply(t, alice, room, otherRoot)
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": root}).Want(t, 400, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": otherReply}).Want(t, 400, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")

		// Ordering: causes at or before the unsubscription are refused.
		reply1 := reply(t, alice, room, root)
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": reply1}).Want(t, 200, "")
		reply2 := reply(t, alice, room, root)
		testnode.Call(t, alice, "DELETE", path, nil).Want(t, 200, "")
		reply3 := reply(t, alice, room, root)
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": reply1}).Want(t, 409, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": reply2}).Want(t, 409, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
		testnode.Call(t, alice, "GET", path, nil).Want(t, 404, "M_NOT_FOUND")
		later := reply3
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": later}).Want(t, 200, "")
		if got := testnode.Call(t, alice, "GET", path, nil).Want(t, 200, "").JSON(t); got["automatic"] != true {
			t.Fatalf("automatic subscription: %v", got)
		}
		// Manual replaces automatic; automatic does not replace manual.
		testnode.Call(t, alice, "PUT", path, map[string]any{}).Want(t, 200, "")
		testnode.Call(t, alice, "PUT", path, map[string]any{"automatic": later}).Want(t, 200, "")
		if got := testnode.Call(t, alice, "GET", path, nil).Want(t, 200, "").JSON(t); got["automatic"] != false {
			t.Fatalf("manual after automatic: %v", got)
		}

		// Unknown threads, and rooms the user is not in.
		testnode.Call(t, alice, "PUT", subPath(room, "$nope"), map[string]any{}).Want(t, 404, "M_NOT_FOUND")
		testnode.Call(t, alice, "GET", subPath(room, "$nope"), nil).Want(t, 404, "M_NOT_FOUND")
		testnode.Call(t, eve, "PUT", path, map[string]any{}).Want(t, 404, "M_NOT_FOUND")
	})
}
