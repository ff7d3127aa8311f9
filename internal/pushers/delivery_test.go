package pushers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// gateway is a push gateway on 127.0.0.1 that records what it receives.
type gateway struct {
	*httptest.Server
	mu       sync.Mutex
	got      []map[string]any
	answer   func(n int) (int, string) // status and body for the nth request
	received chan struct{}
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{received: make(chan struct{}, 100)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		g.mu.Lock()
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != "POST" {
			t.Errorf("gateway got %s %s", r.Method, r.URL.Path)
		}
		g.got = append(g.got, m)
		n := len(g.got)
		g.mu.Unlock()
		status, body := 200, `{"rejected":[]}`
		if g.answer != nil {
			status, body = g.answer(n)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
		g.received <- struct{}{}
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gateway) url() string { return g.URL + "/_matrix/push/v1/notify" }

func (g *gateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.got)
}

// wait returns the next request's body.
func (g *gateway) wait(t *testing.T, timeout time.Duration) map[string]any {
	t.Helper()
	select {
	case <-g.received:
	case <-time.After(timeout):
		t.Fatal("the push gateway received nothing")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got[len(g.got)-1]
}

var allowLoopback testnode.Option = func(c *config.Config) { c.AllowPrivateNetworks = []string{"127.0.0.0/8"} }

// dm creates a room with alice and bob joined (a one-to-one room, whose
// messages notify by default).
func dm(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "chat", Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, r.RoomID); err != nil {
		t.Fatal(err)
	}
	return r.RoomID
}

func TestDelivery(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		g := newGateway(t)
		alice, bob := n.Register("alice"), n.Register("bob")
		if err := bob.SetDisplayName(ctx, "Bobby"); err != nil {
			t.Fatal(err)
		}
		room := dm(t, alice, bob)
		n.Do(t, "POST", setPath, alice.AccessToken, httpPusher("alice-phone", g.url())).OK(t)
		sent, err := bob.SendText(ctx, room, "hello alice")
		if err != nil {
			t.Fatal(err)
		}
		m := g.wait(t, 10*time.Second)
		nt, _ := m["notification"].(map[string]any)
		if nt == nil || nt["event_id"] != string(sent.EventID) || nt["room_id"] != string(room) || nt["type"] != "m.room.message" ||
			nt["sender"] != string(bob.UserID) || nt["sender_display_name"] != "Bobby" || nt["room_name"] != "chat" {
			t.Fatalf("notification: %v", m)
		}
		if c, _ := nt["content"].(map[string]any); c["body"] != "hello alice" {
			t.Fatalf("content: %v", nt["content"])
		}
		if c, _ := nt["counts"].(map[string]any); c["unread"] != 1.0 {
			t.Fatalf("counts: %v", nt["counts"])
		}
		devs, _ := nt["devices"].([]any)
		if len(devs) != 1 {
			t.Fatalf("devices: %v", nt["devices"])
		}
		dev := devs[0].(map[string]any)
		data, _ := dev["data"].(map[string]any)
		tweaks, _ := dev["tweaks"].(map[string]any)
		if dev["pushkey"] != "alice-phone" || dev["app_id"] != "org.example.app" || data["custom"] != "kept" || data["url"] != nil || tweaks["sound"] != "default" {
			t.Fatalf("device: %v", dev)
		}

		// event_id_only sends no event details.
		p := httpPusher("alice-phone", g.url())
		p["data"] = map[string]any{"url": g.url(), "format": "event_id_only"}
		n.Do(t, "POST", setPath, alice.AccessToken, p)
		sent, _ = bob.SendText(ctx, room, "secret")
		nt = g.wait(t, 10*time.Second)["notification"].(map[string]any)
		if nt["event_id"] != string(sent.EventID) || nt["content"] != nil || nt["sender"] != nil || nt["type"] != nil {
			t.Fatalf("event_id_only notification: %v", nt)
		}
		// Bob's own messages do not notify Bob (he has no pusher anyway),
		// and Alice's do not notify Alice.
		before := g.count()
		alice.SendText(ctx, room, "my own")
		time.Sleep(300 * time.Millisecond)
		if g.count() != before {
			t.Fatalf("alice was notified of her own message")
		}
	}, allowLoopback)
}

func TestDeliveryRetriesAndRejection(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, allowLoopback)
	ctx := context.Background()
	g := newGateway(t)
	g.answer = func(n int) (int, string) {
		switch n {
		case 1:
			return 503, `{}`
		case 2:
			return 200, `{"rejected":[]}`
		}
		return 200, `{"rejected":["alice-phone"]}`
	}
	alice, bob := n.Register("alice"), n.Register("bob")
	room := dm(t, alice, bob)
	n.Do(t, "POST", setPath, alice.AccessToken, httpPusher("alice-phone", g.url()))
	sent, _ := bob.SendText(ctx, room, "one")
	first := g.wait(t, 10*time.Second)
	second := g.wait(t, 10*time.Second) // the retry, after the backoff
	id1 := first["notification"].(map[string]any)["event_id"]
	id2 := second["notification"].(map[string]any)["event_id"]
	if id1 != string(sent.EventID) || id2 != id1 {
		t.Fatalf("retry: %v then %v", id1, id2)
	}
	// The gateway rejects the pushkey: the pusher is removed.
	bob.SendText(ctx, room, "two")
	g.wait(t, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(pushkeys(t, n, alice.AccessToken)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("rejected pusher not removed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// By default a push gateway on a loopback address is never contacted.
func TestDeliveryRefusesLoopbackByDefault(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	g := newGateway(t)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := dm(t, alice, bob)
	n.Do(t, "POST", setPath, alice.AccessToken, httpPusher("alice-phone", g.url())).OK(t)
	if _, err := bob.SendText(ctx, room, "hello"); err != nil {
		t.Fatal(err)
	}
	// The notification happened (it is listed) but was not pushed.
	waitNotifications(t, n, alice.AccessToken, 1)
	time.Sleep(500 * time.Millisecond)
	if c := g.count(); c != 0 {
		t.Fatalf("the loopback gateway was contacted %d times", c)
	}
}
