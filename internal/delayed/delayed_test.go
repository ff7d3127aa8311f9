package delayed_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/delayed"
	"github.com/matrixos/matrixos/internal/testnode"
)

const testType = "com.example.test"

func statePath(room id.RoomID, key string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/state/" + testType + "/" + url.PathEscape(key)
}

func sendPath(room id.RoomID, txn string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/send/" + testType + "/" + txn
}

// delay adds the MSC's delay parameter to path.
func delay(path string, d time.Duration) string {
	return fmt.Sprintf("%s?%s=%d", path, delayed.DelayParam, d.Milliseconds())
}

// scheduled lists the user's delayed events.
func scheduled(t *testing.T, c *mautrix.Client) []map[string]any {
	t.Helper()
	body := testnode.Call(t, c, "GET", delayed.Prefix, nil).Want(t, 200, "").JSON(t)
	list, _ := body["delayed_events"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		out = append(out, e.(map[string]any))
	}
	return out
}

// waitScheduled waits until the user's delayed events are those of the
// given delay IDs: a sent event's row is deleted just after its send
// commits, so a test that saw the event may still find it listed.
func waitScheduled(t *testing.T, c *mautrix.Client, delayIDs ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list := scheduled(t, c)
		ids := make([]any, 0, len(list))
		for _, e := range list {
			ids = append(ids, e["delay_id"])
		}
		if slices.Equal(ids, delayIDs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled: %v, want delay IDs %v", list, delayIDs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits until the room has the test state at key and returns
// its content.
func waitState(t *testing.T, c *mautrix.Client, room id.RoomID, key string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := testnode.Call(t, c, "GET", statePath(room, key), nil)
		if res.Status == 200 {
			return res.JSON(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s never arrived: %d %s", key, res.Status, res.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// putDelayed sends a delayed send or state request: its answer is the
// MSC's delay_id instead of the spec's event_id, so it is not checked
// against the spec's schema.
func putDelayed(t *testing.T, c *mautrix.Client, path string, body any) *testnode.Response {
	t.Helper()
	return testnode.Call(t, c, "PUT", path, body, testnode.NoSpecCheck())
}

// action runs a delay ID action without an access token.
func action(t *testing.T, n *testnode.Node, delayID, act string) *testnode.Response {
	t.Helper()
	return n.Do(t, "POST", delayed.Prefix+"/"+url.PathEscape(delayID)+"/"+act, "", map[string]any{})
}

// room creates a public room where anyone may send the test type, as
// state too, and has bob join it.
func room(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	created := testnode.Call(t, alice, "POST", "/_matrix/client/v3/createRoom", map[string]any{
		"preset": "public_chat", "power_level_content_override": map[string]any{"events": map[string]int{testType: 0}},
	}).Want(t, 200, "").JSON(t)
	roomID := id.RoomID(created["room_id"].(string))
	if _, err := bob.JoinRoomByID(context.Background(), roomID); err != nil {
		t.Fatal(err)
	}
	return roomID
}

// TestDelayedMessages: a delayed send answers a delay_id (the same one when
// its transaction is retried, even without a body), is listed for its
// sender alone, and is sent once its delay has passed.
func TestDelayedMessages(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		roomID := room(t, alice, bob)
		path := delay(sendPath(roomID, "txn1"), 300*time.Millisecond)
		first := putDelayed(t, alice, path, map[string]any{"count": 1}).Want(t, 200, "").JSON(t)
		delayID, _ := first["delay_id"].(string)
		if delayID == "" || first["event_id"] != nil {
			t.Fatalf("delayed send answered %v, want a delay_id alone", first)
		}
		retry := putDelayed(t, alice, path, nil).Want(t, 200, "").JSON(t)
		if retry["delay_id"] != delayID {
			t.Fatalf("retried transaction: %v, want delay_id %s", retry, delayID)
		}
		list := scheduled(t, alice)
		if len(list) != 1 || list[0]["delay_id"] != delayID || list[0]["room_id"] != string(roomID) ||
			list[0]["type"] != testType || list[0]["delay"] != 300.0 || list[0]["state_key"] != nil {
			t.Fatalf("alice's delayed events: %v", list)
		}
		if content, _ := list[0]["content"].(map[string]any); content["count"] != 1.0 {
			t.Fatalf("listed content: %v", list[0]["content"])
		}
		if others := scheduled(t, bob); len(others) != 0 {
			t.Fatalf("bob sees alice's delayed events: %v", others)
		}

		// The event arrives once its delay has passed, and is then no
		// longer scheduled.
		deadline := time.Now().Add(10 * time.Second)
		for {
			msgs, err := bob.Messages(context.Background(), roomID, "", "", mautrix.DirectionBackward, nil, 1)
			if err != nil {
				t.Fatal(err)
			}
			if newest := msgs.Chunk[0]; newest.Type.Type == testType {
				if newest.Sender != alice.UserID || newest.Content.Raw["count"] != 1.0 {
					t.Fatalf("the delayed event as sent: %+v", newest)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the delayed event was never sent")
			}
			time.Sleep(20 * time.Millisecond)
		}
		waitScheduled(t, alice)
	})
}

// TestDelayedStateActions: delayed state events are sent when due, when
// asked to (send), later when restarted, and never when cancelled; the
// actions need no access token but an existing delay ID.
func TestDelayedStateActions(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		roomID := room(t, alice, bob)
		schedule := func(key string, d time.Duration) string {
			t.Helper()
			res := putDelayed(t, alice, delay(statePath(roomID, key), d), map[string]any{"key": key}).Want(t, 200, "").JSON(t)
			return res["delay_id"].(string)
		}

		// send: at once, long before its delay.
		sendNow := schedule("sent", time.Hour)
		testnode.Call(t, alice, "GET", statePath(roomID, "sent"), nil).Want(t, 404, "M_NOT_FOUND")
		action(t, n, sendNow, "send").Want(t, 200, "")
		if got := waitState(t, alice, roomID, "sent"); got["key"] != "sent" {
			t.Fatalf("sent state: %v", got)
		}
		action(t, n, sendNow, "send").Want(t, 404, "M_NOT_FOUND")

		// cancel: never sent. restart: sent a delay after the restart. A
		// plain one, scheduled after the cancelled one with a longer delay,
		// is the signal that the cancelled one's time has passed.
		cancelled := schedule("cancelled", 200*time.Millisecond)
		restarted := schedule("restarted", 400*time.Millisecond)
		action(t, n, cancelled, "cancel").Want(t, 200, "")
		time.Sleep(200 * time.Millisecond)
		action(t, n, restarted, "restart").Want(t, 200, "")
		since := time.Now()
		schedule("plain", 300*time.Millisecond)
		waitState(t, alice, roomID, "plain")
		testnode.Call(t, alice, "GET", statePath(roomID, "cancelled"), nil).Want(t, 404, "M_NOT_FOUND")
		waitState(t, alice, roomID, "restarted")
		if waited := time.Since(since); waited < 350*time.Millisecond {
			t.Fatalf("restarted event sent %s after the restart, want its whole delay", waited)
		}
		waitScheduled(t, alice)

		// Unknown IDs and actions.
		action(t, n, "nope", "cancel").Want(t, 404, "M_NOT_FOUND")
		action(t, n, "nope", "oops").Want(t, 404, "M_UNRECOGNIZED")
		// The older form: the action in the body, for the owner only.
		other := schedule("body", time.Hour)
		testnode.Call(t, bob, "POST", delayed.Prefix+"/"+other, map[string]any{"action": "cancel"}).Want(t, 404, "M_NOT_FOUND")
		testnode.Call(t, alice, "POST", delayed.Prefix+"/"+other, map[string]any{}).Want(t, 400, "M_MISSING_PARAM")
		testnode.Call(t, alice, "POST", delayed.Prefix+"/"+other, map[string]any{"action": "cancel"}).Want(t, 200, "")
		n.Do(t, "GET", delayed.Prefix, "", nil).Want(t, 401, "M_MISSING_TOKEN")
	})
}

// TestDelayedStateOverwritten: another user's change of the same state
// cancels a delayed state event; the scheduler's own change does not.
func TestDelayedStateOverwritten(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		roomID := room(t, alice, bob)
		res := putDelayed(t, alice, delay(statePath(roomID, "k"), time.Hour), map[string]any{"v": "delayed"}).Want(t, 200, "").JSON(t)
		own := res["delay_id"].(string)
		testnode.Call(t, alice, "PUT", statePath(roomID, "k"), map[string]any{"v": "alice"}).Want(t, 200, "")
		if list := scheduled(t, alice); len(list) != 1 || list[0]["delay_id"] != own {
			t.Fatalf("alice's own change cancelled her delayed event: %v", list)
		}
		testnode.Call(t, bob, "PUT", statePath(roomID, "k"), map[string]any{"v": "bob"}).Want(t, 200, "")
		if list := scheduled(t, alice); len(list) != 0 {
			t.Fatalf("bob's change left alice's delayed event: %v", list)
		}
		if got := waitState(t, alice, roomID, "k"); got["v"] != "bob" {
			t.Fatalf("state: %v", got)
		}
	})
}

// TestDelayedBadRequests: delays that are no number, negative or above
// max_event_delay are refused, as is a delayed event for a room the user
// is not in.
func TestDelayedBadRequests(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.MaxEventDelay = time.Minute })
	alice, bob := n.Register("alice"), n.Register("bob")
	roomID := room(t, alice, bob)
	path := statePath(roomID, "k")
	body := map[string]any{"v": 1}
	param := "?" + delayed.DelayParam + "="
	putDelayed(t, alice, path+param+"soon", body).Want(t, 400, "M_INVALID_PARAM")
	putDelayed(t, alice, path+param+"-5", body).Want(t, 400, "M_INVALID_PARAM")
	tooLong := putDelayed(t, alice, path+param+"60001", body).Want(t, 400, "M_UNKNOWN").JSON(t)
	if tooLong["org.matrix.msc4140.errcode"] != "M_MAX_DELAY_EXCEEDED" || tooLong["org.matrix.msc4140.max_delay"] != 60000.0 {
		t.Fatalf("delay over the maximum: %v", tooLong)
	}
	eve := n.Register("eve")
	putDelayed(t, eve, delay(path, time.Second), body).Want(t, 403, "M_FORBIDDEN")
	if list := scheduled(t, alice); len(list) != 0 {
		t.Fatalf("refused requests scheduled events: %v", list)
	}
}

// TestDelayedSurvivesRestart: a node that stops keeps its delayed events
// and sends those that fell due meanwhile once it is back.
func TestDelayedSurvivesRestart(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		roomID := room(t, alice, bob)
		putDelayed(t, alice, delay(statePath(roomID, "soon"), 300*time.Millisecond), map[string]any{"v": 1}).Want(t, 200, "")
		later := putDelayed(t, alice, delay(statePath(roomID, "later"), time.Hour), map[string]any{"v": 2}).Want(t, 200, "").JSON(t)
		n = n.Restart()
		alice.HomeserverURL, _ = url.Parse(n.URL)
		waitState(t, alice, roomID, "soon")
		waitScheduled(t, alice, later["delay_id"])
	})
}

// TestDelayedPerUserCap: a user may have MaxPerUser delayed events
// scheduled at once, also after a restart; more are refused with 429
// M_LIMIT_EXCEEDED until one is sent or cancelled, and other users are
// not held to the first one's count.
func TestDelayedPerUserCap(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	roomID := room(t, alice, bob)
	var first string
	for i := range delayed.MaxPerUser {
		res := putDelayed(t, alice, delay(sendPath(roomID, fmt.Sprintf("cap%d", i)), time.Hour), map[string]any{"i": i}).Want(t, 200, "").JSON(t)
		if i == 0 {
			first, _ = res["delay_id"].(string)
		}
	}
	over := func() *testnode.Response {
		return putDelayed(t, alice, delay(sendPath(roomID, "over"), time.Hour), map[string]any{})
	}
	over().Want(t, 429, "M_LIMIT_EXCEEDED")
	putDelayed(t, bob, delay(sendPath(roomID, "bob"), time.Hour), map[string]any{}).Want(t, 200, "")

	n = n.Restart()
	alice.HomeserverURL, _ = url.Parse(n.URL)
	over().Want(t, 429, "M_LIMIT_EXCEEDED")
	action(t, n, first, "cancel").Want(t, 200, "")
	over().Want(t, 200, "")
	if list := scheduled(t, alice); len(list) != delayed.MaxPerUser {
		t.Fatalf("%d delayed events scheduled, want %d", len(list), delayed.MaxPerUser)
	}
}
