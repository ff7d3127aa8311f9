package keys_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/testnode"
)

// toDevice returns the "n" fields of the to-device events of a sync.
func toDevice(s map[string]any) []string {
	var out []string
	evs, _ := get(s, "to_device", "events").([]any)
	for _, ev := range evs {
		out = append(out, fmt.Sprint(get(ev, "content", "n")))
	}
	return out
}

func TestSendToDevice(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		alice2 := n.Login(alice.UserID)
		send := func(txn string, devs map[string]any) *testnode.Response {
			return testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/"+txn, map[string]any{"messages": map[string]any{string(alice.UserID): devs}})
		}
		send("t1", map[string]any{string(alice.DeviceID): map[string]any{"n": "1"}}).OK(t)
		send("t2", map[string]any{"*": map[string]any{"n": "2"}}).OK(t)
		send("t2", map[string]any{"*": map[string]any{"n": "retried"}}).OK(t) // same txn: ignored
		// The same transaction ID for another event type is another request.
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.other/t2", map[string]any{"messages": map[string]any{
			string(alice.UserID): map[string]any{string(alice.DeviceID): map[string]any{"n": "other type"}}}}).OK(t)

		s1 := syncOnce(t, alice, "", 0)
		if got := strings.Join(toDevice(s1), ","); got != "1,2,other type" {
			t.Fatalf("device 1 got %q, want 1,2,other type", got)
		}
		ev := get(s1, "to_device", "events").([]any)[0]
		if get(ev, "sender") != string(bob.UserID) || get(ev, "type") != "m.test" {
			t.Errorf("event = %v", ev)
		}
		if got := strings.Join(toDevice(syncOnce(t, alice2, "", 0)), ","); got != "2" {
			t.Errorf("device 2 got %q, want 2", got)
		}
		// Not acknowledged yet: an initial sync sees them again.
		if got := strings.Join(toDevice(syncOnce(t, alice, "", 0)), ","); got != "1,2,other type" {
			t.Errorf("redelivery got %q", got)
		}
		// Syncing with the token acknowledges them.
		next := s1["next_batch"].(string)
		if got := toDevice(syncOnce(t, alice, next, 0)); len(got) != 0 {
			t.Errorf("after ack got %v", got)
		}
		if got := toDevice(syncOnce(t, alice, "", 0)); len(got) != 0 {
			t.Errorf("acknowledged messages are still there: %v", got)
		}

		// A long-poll wakes for a to-device message.
		s := syncOnce(t, alice, "", 0)
		done := make(chan map[string]any, 1)
		go func() { done <- syncOnce(t, alice, s["next_batch"].(string), 10000) }()
		time.Sleep(100 * time.Millisecond)
		send("t3", map[string]any{string(alice.DeviceID): map[string]any{"n": "3"}}).OK(t)
		select {
		case got := <-done:
			if strings.Join(toDevice(got), ",") != "3" {
				t.Errorf("long-poll got %v", toDevice(got))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("long-poll did not wake for a to-device message")
		}
	})
}

func TestToDevicePaging(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		n.Keys.Limits.ToDevicePerSync = 2
		alice, bob := n.Register("alice"), n.Register("bob")
		var want []string
		for i := range 7 {
			want = append(want, itoa(i))
			testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/p"+itoa(i), map[string]any{
				"messages": map[string]any{string(alice.UserID): map[string]any{string(alice.DeviceID): map[string]any{"n": itoa(i)}}},
			}).OK(t)
		}
		var got []string
		since := ""
		prevSince := ""
		for range 10 {
			s := syncOnce(t, alice, since, 0)
			msgs := toDevice(s)
			if len(msgs) > 2 {
				t.Fatalf("a sync returned %d messages, limit 2", len(msgs))
			}
			got = append(got, msgs...)
			since = s["next_batch"].(string)
			if len(msgs) == 0 {
				break
			}
			if len(got) == 4 {
				// A retried sync with the same token gets the same page.
				again := toDevice(syncOnce(t, alice, prevSince, 0))
				if strings.Join(again, ",") != strings.Join(got[2:4], ",") {
					t.Errorf("retried page %v, want %v", again, got[2:4])
				}
			}
			prevSince = since
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}

func TestSendToDeviceErrors(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		n.Keys.Limits.MaxToDeviceQueue = 2
		alice, bob := n.Register("alice"), n.Register("bob")
		to := func(content any) map[string]any {
			return map[string]any{"messages": map[string]any{string(alice.UserID): map[string]any{string(alice.DeviceID): content}}}
		}
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/e1", map[string]any{}).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/e2", to("text")).Want(t, http.StatusBadRequest, "M_BAD_JSON")
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/e3", to(map[string]any{"big": strings.Repeat("x", 70000)})).Want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/e4", `{"messages": 1}`).Want(t, http.StatusBadRequest, "M_BAD_JSON")
		// Unknown users and devices are skipped.
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/e5", map[string]any{"messages": map[string]any{
			"@nobody:localhost": map[string]any{"*": map[string]any{}}, string(alice.UserID): map[string]any{"NOSUCHDEVICE": map[string]any{}},
		}}).OK(t)
		// The queue of an absent device is capped.
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/q1", to(map[string]any{})).OK(t)
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/q2", to(map[string]any{})).OK(t)
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/q3", to(map[string]any{})).Want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	})
}
