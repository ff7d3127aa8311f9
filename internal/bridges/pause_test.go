//go:build goolm

package bridges_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestDisabledBridgeGetsNothing: while a bridge is disabled, a program
// that took its loopback port gets no transaction (with the hs_token) and
// no user query; what happened meanwhile stays queued and reaches the
// bridge once it runs again (its bot answers the "help" sent then).
func TestDisabledBridgeGetsNothing(t *testing.T) {
	node := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	m := startManager(t, node, bridgetest.EchoKind("echo", 0, nil))
	if _, err := m.Enable(ctx, "echo", ""); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "echo", bridges.StateRunning)
	alice := node.Register("alice")
	bot := id.NewUserID("echobot", node.Config.ServerName)
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Invite: []id.UserID{bot}, IsDirect: true})
	testnode.WaitFor(t, 30*time.Second, "bot joins", func() bool {
		var c event.MemberEventContent
		err := alice.StateEvent(ctx, room, event.StateMember, string(bot), &c)
		return err == nil && c.Membership == event.MembershipJoin
	})
	if _, err := m.Disable(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "echo", bridges.StateStopped)

	reg := loadRegistration(t, node.Config.DataDir, "echo")
	u, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var squatted []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		squatted = append(squatted, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Write([]byte("{}"))
	})}
	go srv.Serve(l)

	sent := testnode.SendText(t, alice, room, "help")
	if _, err := alice.GetProfile(ctx, id.NewUserID("echo_nobody", node.Config.ServerName)); err == nil {
		t.Error("the profile of a ghost the bridge never made exists")
	}
	testnode.WaitFor(t, 10*time.Second, "the message queued", func() bool {
		return node.AppserviceQueue.Status(reg.ID).QueueDepth > 0
	})
	time.Sleep(time.Second) // ten times the queue's batch delay
	srv.Close()
	mu.Lock()
	if len(squatted) > 0 {
		t.Errorf("the program on the disabled bridge's port %s got %v", u.Host, squatted)
	}
	squatted = nil
	mu.Unlock()

	if _, err := m.Enable(ctx, "echo", ""); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "echo", bridges.StateRunning)
	testnode.WaitFor(t, 30*time.Second, "the bot answers the help sent while disabled", func() bool {
		msgs, err := alice.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 20)
		if err != nil {
			return false
		}
		for _, ev := range msgs.Chunk {
			if ev.ID == sent {
				return false // newest first: nothing of the bot's after it
			}
			if ev.Sender == bot && ev.Type == event.EventMessage {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if len(squatted) > 0 {
		t.Errorf("the program on the disabled bridge's port %s got %v", u.Host, squatted)
	}
}
