package pushers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/pushers"
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

// observer records the delivery steps of a node's push service, so a
// test can wait for one instead of sleeping.
type observer struct {
	mu      sync.Mutex
	steps   []pushers.Outcome
	changed chan struct{}
}

func observe(n *testnode.Node) *observer {
	o := &observer{changed: make(chan struct{}, 1)}
	pushers.Observe(n.Pushers(), func(out pushers.Outcome) {
		o.mu.Lock()
		o.steps = append(o.steps, out)
		o.mu.Unlock()
		select {
		case o.changed <- struct{}{}:
		default:
		}
	})
	return o
}

// of returns the steps of the event's deliveries so far.
func (o *observer) of(ev id.EventID) []pushers.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []pushers.Outcome
	for _, s := range o.steps {
		if s.EventID == ev {
			out = append(out, s)
		}
	}
	return out
}

// wait returns the event's delivery step st, waiting up to 10 seconds.
func (o *observer) wait(t *testing.T, ev id.EventID, st pushers.Step) pushers.Outcome {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		for _, s := range o.of(ev) {
			if s.Step == st {
				return s
			}
		}
		select {
		case <-o.changed:
		case <-timeout:
			t.Fatalf("no %s step for %s; saw %v", st, ev, o.of(ev))
		}
	}
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
		steps := observe(n)
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
		n.Do(t, "POST", setPath, alice.AccessToken, p).OK(t)
		sent.EventID = testnode.SendText(t, bob, room, "secret")
		nt = g.wait(t, 10*time.Second)["notification"].(map[string]any)
		if nt["event_id"] != string(sent.EventID) || nt["content"] != nil || nt["sender"] != nil || nt["type"] != nil {
			t.Fatalf("event_id_only notification: %v", nt)
		}
		// Alice's own message does not notify her. Had it, its delivery
		// would have been queued before her send returned (OnNotify runs
		// once the event's transaction commits, before Send returns), so
		// before Bob's next message, whose delivery shows the queue works.
		own := testnode.SendText(t, alice, room, "my own")
		later := testnode.SendText(t, bob, room, "after alice's")
		steps.wait(t, later, pushers.StepSent)
		if s := steps.of(own); len(s) != 0 {
			t.Fatalf("alice's own message went to her pusher: %v", s)
		}
	}, allowLoopback)
}

func TestDeliveryRetriesAndRejection(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, allowLoopback)
	g := newGateway(t)
	steps := observe(n)
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
	n.Do(t, "POST", setPath, alice.AccessToken, httpPusher("alice-phone", g.url())).OK(t)
	sent := testnode.SendText(t, bob, room, "one")
	first := g.wait(t, 10*time.Second)
	second := g.wait(t, 10*time.Second) // the retry, after the backoff
	id1 := first["notification"].(map[string]any)["event_id"]
	id2 := second["notification"].(map[string]any)["event_id"]
	if id1 != string(sent) || id2 != id1 {
		t.Fatalf("retry: %v then %v", id1, id2)
	}
	// The gateway rejects the pushkey: the pusher is removed.
	two := testnode.SendText(t, bob, room, "two")
	g.wait(t, 10*time.Second)
	steps.wait(t, two, pushers.StepRejected)
	if keys := pushkeys(t, n, alice.AccessToken); len(keys) != 0 {
		t.Fatalf("rejected pusher not removed: %v", keys)
	}
}

// By default a push gateway on a loopback address is never contacted.
func TestDeliveryRefusesLoopbackByDefault(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	g := newGateway(t)
	steps := observe(n)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := dm(t, alice, bob)
	n.Do(t, "POST", setPath, alice.AccessToken, httpPusher("alice-phone", g.url())).OK(t)
	sent := testnode.SendText(t, bob, room, "hello")
	// The notification happened (it is listed), and its delivery was
	// tried and refused before any connection to the gateway.
	waitNotifications(t, n, alice.AccessToken, 1)
	if s := steps.wait(t, sent, pushers.StepFailed); !errors.Is(s.Err, netguard.ErrForbidden) {
		t.Fatalf("delivery failed with %v, want the address refused", s.Err)
	}
	if c := g.count(); c != 0 {
		t.Fatalf("the loopback gateway was contacted %d times", c)
	}
}

// TestInviteNotifies: an invite notifies the invited local user
// (.m.rule.invite_for_me) though they have not joined and the room has one
// joined member: it is listed by /notifications and pushed.
func TestInviteNotifies(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, allowLoopback)
	g := newGateway(t)
	alice, bob := n.Register("alice"), n.Register("bob")
	n.Do(t, "POST", setPath, bob.AccessToken, httpPusher("bob-phone", g.url())).OK(t)
	r, err := alice.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	nt, _ := g.wait(t, 10*time.Second)["notification"].(map[string]any)
	if nt == nil || nt["room_id"] != string(r.RoomID) || nt["type"] != "m.room.member" || nt["user_is_target"] != true || nt["sender"] != string(alice.UserID) {
		t.Fatalf("pushed notification: %v", nt)
	}
	listed := waitNotifications(t, n, bob.AccessToken, 1).Notifications
	if len(listed) != 1 || listed[0].RoomID != r.RoomID || listed[0].Event["type"] != "m.room.member" || listed[0].Event["state_key"] != string(bob.UserID) {
		t.Fatalf("bob's notifications: %+v", listed)
	}
	if c, _ := listed[0].Event["content"].(map[string]any); c["membership"] != "invite" {
		t.Fatalf("the notification's event is not the invite: %+v", listed[0].Event)
	}
}

// TestIgnoredSenderNotifiesNothing: a message from a user alice ignores
// is neither listed by her /notifications nor pushed, while the next
// message, from carol, is both.
func TestIgnoredSenderNotifiesNothing(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, allowLoopback)
	ctx := context.Background()
	g := newGateway(t)
	steps := observe(n)
	alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
	r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID, carol.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*mautrix.Client{bob, carol} {
		if _, err := c.JoinRoomByID(ctx, r.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.SetAccountData(ctx, "m.ignored_user_list", map[string]any{"ignored_users": map[id.UserID]any{bob.UserID: map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	n.Do(t, "POST", setPath, alice.AccessToken, httpPusher("alice-phone", g.url())).OK(t)
	ignored := testnode.SendText(t, bob, r.RoomID, "from bob")
	heard := testnode.SendText(t, carol, r.RoomID, "from carol")
	steps.wait(t, heard, pushers.StepSent)
	if s := steps.of(ignored); len(s) != 0 {
		t.Fatalf("the ignored user's message went to alice's pusher: %v", s)
	}
	listed := waitNotifications(t, n, alice.AccessToken, 1).Notifications
	if len(listed) != 1 || listed[0].Event["event_id"] != string(heard) {
		t.Fatalf("alice's notifications: %+v", listed)
	}
}
