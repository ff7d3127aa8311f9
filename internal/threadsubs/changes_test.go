package threadsubs_test

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

const (
	slidingPath  = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
	extension    = "io.element.msc4308.thread_subscriptions"
	companionURL = "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions"
)

// sliding runs one sliding sync request with the thread_subscriptions
// extension and returns the new pos and the extension's part ({} when
// absent).
func sliding(t *testing.T, c *mautrix.Client, pos string, limit int, timeoutMS int) (string, map[string]any) {
	t.Helper()
	body := map[string]any{"extensions": map[string]any{extension: map[string]any{"enabled": true, "limit": limit}}}
	if pos != "" {
		body["pos"], body["timeout"] = pos, timeoutMS
	}
	resp := testnode.Call(t, c, "POST", slidingPath, body).OK(t)
	newPos, _ := resp["pos"].(string)
	if newPos == "" {
		t.Fatalf("no pos in %v", resp)
	}
	exts, _ := resp["extensions"].(map[string]any)
	ext, _ := exts[extension].(map[string]any)
	if ext == nil {
		ext = map[string]any{}
	}
	return newPos, ext
}

// entry returns ext[part][room][thread], or nil.
func entry(ext map[string]any, part string, room id.RoomID, thread id.EventID) map[string]any {
	rooms, _ := ext[part].(map[string]any)
	threads, _ := rooms[string(room)].(map[string]any)
	e, _ := threads[string(thread)].(map[string]any)
	return e
}

// TestThreadSubscriptionsSlidingSync: sliding sync's thread_subscriptions
// extension (MSC4308) sends a connection the subscriptions made and ended
// since its last response, each with its bump_stamp, wakes a waiting
// connection when one changes, and with more changes than the limit gives
// the newest and a prev_batch through which the companion endpoint pages
// back to the rest.
func TestThreadSubscriptionsSlidingSync(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		root1 := testnode.SendText(t, alice, room, "root one")
		root2 := testnode.SendText(t, alice, room, "root two")
		root3 := testnode.SendText(t, alice, room, "root three")

		pos, ext := sliding(t, alice, "", 10, 0)
		if len(ext) != 0 {
			t.Fatalf("initial extension without subscriptions: %v", ext)
		}

		// A waiting connection wakes with the new subscription.
		type result struct {
			pos string
			ext map[string]any
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			p, e := sliding(t, alice, pos, 10, 20000)
			done <- result{p, e}
		}()
		time.Sleep(200 * time.Millisecond) // let the request start waiting
		testnode.Call(t, alice, "PUT", subPath(room, root1), map[string]any{}).Want(t, 200, "")
		var r result
		select {
		case r = <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("sliding sync did not wake for the subscription")
		}
		if waited := time.Since(start); waited > 10*time.Second {
			t.Fatalf("woke after %v", waited)
		}
		sub := entry(r.ext, "subscribed", room, root1)
		if sub == nil || sub["automatic"] != false {
			t.Fatalf("incremental extension = %v", r.ext)
		}
		stamp1, ok := sub["bump_stamp"].(float64)
		if !ok || stamp1 <= 0 {
			t.Fatalf("bump_stamp = %v", sub["bump_stamp"])
		}
		pos = r.pos

		// Nothing new: the next response does not repeat it.
		pos, ext = sliding(t, alice, pos, 10, 0)
		if len(ext) != 0 {
			t.Fatalf("extension repeated: %v", ext)
		}

		// Unsubscribing is a change too.
		testnode.Call(t, alice, "DELETE", subPath(room, root1), nil).Want(t, 200, "")
		pos, ext = sliding(t, alice, pos, 10, 0)
		unsub := entry(ext, "unsubscribed", room, root1)
		if unsub == nil || unsub["bump_stamp"].(float64) <= stamp1 || entry(ext, "subscribed", room, root1) != nil {
			t.Fatalf("after unsubscribing: %v", ext)
		}

		// Three changes, limit two: the newest two and a prev_batch.
		for _, root := range []id.EventID{root1, root2, root3} {
			testnode.Call(t, alice, "PUT", subPath(room, root), map[string]any{}).Want(t, 200, "")
		}
		_, ext = sliding(t, alice, pos, 2, 0)
		if entry(ext, "subscribed", room, root3) == nil || entry(ext, "subscribed", room, root2) == nil ||
			entry(ext, "subscribed", room, root1) != nil {
			t.Fatalf("limited extension: %v", ext)
		}
		prev, _ := ext["prev_batch"].(string)
		if prev == "" {
			t.Fatalf("no prev_batch: %v", ext)
		}
		page := testnode.Call(t, alice, "GET", companionURL+"?dir=b&limit=10&from="+url.QueryEscape(prev)+"&to="+url.QueryEscape(pos), nil).OK(t)
		if entry(page, "subscribed", room, root1) == nil || entry(page, "subscribed", room, root2) != nil || page["end"] != nil {
			t.Fatalf("companion page = %v", page)
		}

		// The companion endpoint from the newest change, one at a time.
		page = testnode.Call(t, alice, "GET", companionURL+"?dir=b&limit=1", nil).OK(t)
		end, _ := page["end"].(string)
		if entry(page, "subscribed", room, root3) == nil || end == "" {
			t.Fatalf("first page = %v", page)
		}
		page = testnode.Call(t, alice, "GET", companionURL+"?dir=b&limit=1&from="+url.QueryEscape(end), nil).OK(t)
		if entry(page, "subscribed", room, root2) == nil {
			t.Fatalf("second page = %v", page)
		}

		// Bad requests.
		testnode.Call(t, alice, "GET", companionURL, nil).Want(t, 400, "M_MISSING_PARAM")
		testnode.Call(t, alice, "GET", companionURL+"?dir=f", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "GET", companionURL+"?dir=b&limit=0", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "GET", companionURL+"?dir=b&from=nonsense", nil).Want(t, 400, "M_INVALID_PARAM")
		testnode.Call(t, alice, "POST", slidingPath, map[string]any{
			"extensions": map[string]any{extension: map[string]any{"enabled": true, "limit": 0}},
		}).Want(t, 400, "M_INVALID_PARAM")
	})
}

// TestThreadSubscriptionPushRules: with thread_subscription_push_rules on,
// a reply in a thread bob subscribed to notifies him, one in a thread he
// did not subscribe to does not, and his unread counts say so; the
// postcontent kind takes no client rules.
func TestThreadSubscriptionPushRules(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.ThreadSubscriptionRules = true })
	alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
	room := testnode.PublicRoom(t, alice, bob, carol)
	followed := testnode.SendText(t, alice, room, "followed")
	ignored := testnode.SendText(t, alice, room, "ignored")
	testnode.Call(t, bob, "PUT", subPath(room, followed), map[string]any{}).Want(t, 200, "")
	since := testnode.SyncOnce(t, bob, "", 0).NextBatch

	reply(t, alice, room, ignored)
	reply(t, alice, room, followed)
	reply(t, alice, room, followed)

	notes := testnode.Call(t, bob, "GET", "/_matrix/client/v3/notifications", nil).OK(t)
	list, _ := notes["notifications"].([]any)
	var threads []string
	for _, item := range list {
		ev, _ := item.(map[string]any)["event"].(map[string]any)
		content, _ := ev["content"].(map[string]any)
		rel, _ := content["m.relates_to"].(map[string]any)
		if th, _ := rel["event_id"].(string); th != "" {
			threads = append(threads, th)
		}
	}
	if len(threads) != 2 || threads[0] != string(followed) || threads[1] != string(followed) {
		t.Fatalf("bob's thread notifications are in threads %v, want two in %s", threads, followed)
	}
	// The two roots and the two replies in the followed thread.
	resp := testnode.SyncOnce(t, bob, since, 0)
	if got := resp.Rooms.Join[room].UnreadNotifications; got == nil || got.NotificationCount != 4 {
		t.Fatalf("bob's unread notifications = %+v, want 4", got)
	}

	testnode.Call(t, bob, "PUT", "/_matrix/client/v3/pushrules/global/postcontent/mine", map[string]any{
		"actions": []string{"notify"},
	}).Want(t, 400, "M_INVALID_PARAM")
	rule := testnode.Call(t, bob, "GET", "/_matrix/client/v3/pushrules/global/postcontent/.io.element.msc4306.rule.subscribed_thread", nil).OK(t)
	if rule["enabled"] != true {
		t.Fatalf("subscribed_thread rule = %v", rule)
	}
}
