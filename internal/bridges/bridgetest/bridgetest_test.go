//go:build goolm

package bridgetest_test

import (
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
)

// TestEchoBridgeEncrypted runs a bridge end to end in encrypted rooms: the
// bot answers help and a login in a DM, a portal room is created for a
// network chat, and messages cross both ways.
func TestEchoBridgeEncrypted(t *testing.T) {
	env := bridgetest.Start(t, bridgetest.EchoKind("echo", 0, nil), "")
	dm := env.DM()
	env.WaitMessage(dm, env.Bot, "This room has been marked as your management room")

	env.Send(dm, "help")
	env.WaitMessage(dm, env.Bot, "login")

	env.Send(dm, "login")
	env.WaitMessage(dm, env.Bot, "Enter a name")
	env.Send(dm, "tester")
	env.WaitMessage(dm, env.Bot, "Logged in as tester")

	network := env.Network.(*bridgetest.EchoNetwork)
	if network.Config.Greeting != "hello" {
		t.Errorf("network config greeting = %q, want the example's hello", network.Config.Greeting)
	}
	network.Say(t, "tester", "n1", "hello from the network")
	portal := env.WaitPortal("Echo room")
	alice := id.NewUserID("echo_alice", env.Node.Config.ServerName)
	env.WaitMessage(portal, alice, "hello from the network")

	env.Send(portal, "hello from Matrix")
	select {
	case body := <-network.FromMatrix:
		if body != "hello from Matrix" {
			t.Errorf("network got %q, want %q", body, "hello from Matrix")
		}
	case <-time.After(bridgetest.Timeout):
		t.Fatal("the message from Matrix did not reach the network")
	}
}
