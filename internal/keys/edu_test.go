package keys_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

// edu marshals an EDU's content.
func edu(t *testing.T, content any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// toDeviceEvents returns the to-device events of one /sync.
func toDeviceEvents(t *testing.T, s map[string]any) []any {
	t.Helper()
	evs, _ := get(s, "to_device", "events").([]any)
	return evs
}

// TestHandleDirectToDevice: an m.direct_to_device EDU from the sender's
// server reaches the named local device (and "*" every device of the
// user), once however often the server retries it, and survives a
// restart of the receiving node; a sender of another server is refused
// and queues nothing.
func TestHandleDirectToDevice(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		alice2 := n.Login(alice.UserID)
		const origin = "remote.example"
		msg := func(id, device string, body string) json.RawMessage {
			return edu(t, map[string]any{
				"sender": "@bob:" + origin, "type": "m.test", "message_id": id,
				"messages": map[string]any{
					string(alice.UserID): map[string]any{device: map[string]any{"body": body}},
					"@carol:elsewhere":   map[string]any{"X": map[string]any{"body": "not ours"}},
				},
			})
		}

		forged := edu(t, map[string]any{"sender": "@bob:other.example", "type": "m.test", "message_id": "f",
			"messages": map[string]any{string(alice.UserID): map[string]any{"*": map[string]any{"body": "forged"}}}})
		if err := n.Keys.HandleDirectToDevice(ctx, origin, forged); err == nil {
			t.Fatal("a sender of another server was accepted")
		} else if e, ok := mxhttp.AsError(err); !ok || e.Code != "M_FORBIDDEN" {
			t.Errorf("forged sender: %v, want M_FORBIDDEN", err)
		}
		if err := n.Keys.HandleDirectToDevice(ctx, origin, edu(t, map[string]any{"sender": "@bob:" + origin, "type": "m.test"})); err == nil {
			t.Error("an EDU without message_id was accepted")
		}

		for range 2 { // the second is a retry
			if err := n.Keys.HandleDirectToDevice(ctx, origin, msg("m1", string(alice.DeviceID), "one")); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.Keys.HandleDirectToDevice(ctx, origin, msg("m2", "*", "all")); err != nil {
			t.Fatal(err)
		}

		n = n.Restart()
		alice.HomeserverURL = mustURL(t, n.URL)
		alice2.HomeserverURL = alice.HomeserverURL
		evs := toDeviceEvents(t, syncOnce(t, alice, "", 0))
		if len(evs) != 2 || get(evs[0], "content", "body") != "one" || get(evs[1], "content", "body") != "all" ||
			get(evs[0], "sender") != "@bob:"+origin || get(evs[0], "type") != "m.test" {
			t.Fatalf("first device got %v, want 'one' once, then 'all'", evs)
		}
		evs = toDeviceEvents(t, syncOnce(t, alice2, "", 0))
		if len(evs) != 1 || get(evs[0], "content", "body") != "all" {
			t.Fatalf("second device got %v, want only 'all'", evs)
		}
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
