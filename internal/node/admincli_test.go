package node_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/testnode"
)

// adminCLI opens the node's database the way `matrixos user` does: its own
// storage.DB and accounts service, beside the running node.
func adminCLI(t *testing.T, n *testnode.Node) *accounts.Service {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := node.OpenDB(context.Background(), n.Config, log)
	if err != nil {
		t.Fatalf("open the node's database as the CLI does: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return accounts.New(db, log, node.AccountsOptions(n.Config))
}

// waitRefused polls whoami with c's token until the node answers 401
// M_UNKNOWN_TOKEN; the test fails if it still works after 2 seconds
// (the node caches tokens for 30 s).
func waitRefused(t *testing.T, c *mautrix.Client) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := c.Whoami(context.Background())
		var he mautrix.HTTPError
		if errors.As(err, &he) && he.IsStatus(401) && he.RespError != nil && he.RespError.ErrCode == "M_UNKNOWN_TOKEN" {
			return time.Since(start)
		}
		if err != nil && !errors.As(err, &he) {
			t.Fatalf("whoami: %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%s's token still works %v after the CLI revoked it (last answer: %v)", c.UserID, time.Since(start), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeave syncs c from since until the timeline of room shows user's
// leave; the test fails if it has not come within 5 seconds.
func waitLeave(t *testing.T, c *mautrix.Client, since string, room id.RoomID, user id.UserID) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := testnode.SyncOnce(t, c, since, 1000)
		since = s.NextBatch
		if jr, ok := s.Rooms.Join[room]; ok {
			for _, ev := range jr.Timeline.Events {
				if ev.Type == event.StateMember && ev.GetStateKey() == string(user) && ev.Content.Raw["membership"] == "leave" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s saw no leave of %s in %s within 5s", c.UserID, user, room)
		}
	}
}

// TestAdminCLIChangesReachRunningNode: `matrixos user reset-password` and
// `user deactivate` write to the database of a running node; the node
// refuses the revoked tokens at once (not after its 30 s token cache), and
// a deactivated user leaves its rooms at once, as with the admin API.
func TestAdminCLIChangesReachRunningNode(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		invited, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		since := testnode.SyncOnce(t, alice, "", 0).NextBatch
		// The node has bob's token in its cache.
		if _, err := bob.Whoami(ctx); err != nil {
			t.Fatal(err)
		}
		cli := adminCLI(t, n)

		const newPassword = "a new password from the CLI"
		if err := cli.SetPassword(ctx, bob.UserID, newPassword, true, ""); err != nil {
			t.Fatalf("reset-password: %v", err)
		}
		t.Logf("reset-password: the old token was refused after %v", waitRefused(t, bob))
		if _, err := n.Client().Login(ctx, &mautrix.ReqLogin{
			Type:       mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(bob.UserID)},
			Password:   testnode.Password,
		}); err == nil {
			t.Fatal("the old password still logs in after reset-password")
		}
		bob2 := n.Client()
		if _, err := bob2.Login(ctx, &mautrix.ReqLogin{
			Type:             mautrix.AuthTypePassword,
			Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: string(bob.UserID)},
			Password:         newPassword,
			StoreCredentials: true,
		}); err != nil {
			t.Fatalf("login with the new password: %v", err)
		}
		if _, err := bob2.Whoami(ctx); err != nil {
			t.Fatal(err)
		}

		if err := cli.Deactivate(ctx, bob.UserID, false); err != nil {
			t.Fatalf("deactivate: %v", err)
		}
		t.Logf("deactivate: the token was refused after %v", waitRefused(t, bob2))
		waitLeave(t, alice, since, room, bob.UserID)
		// The invite is withdrawn too (bob rejected it).
		for deadline := time.Now().Add(5 * time.Second); n.Rooms.Memberships(bob.UserID)[invited.RoomID] != "leave"; {
			if time.Now().After(deadline) {
				t.Fatalf("bob's membership in the room he was invited to: %q", n.Rooms.Memberships(bob.UserID)[invited.RoomID])
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestAdminCLIDeactivateWhileStopped: a deactivation made by the CLI while
// no node runs is finished by the node before it starts serving.
func TestAdminCLIDeactivateWhileStopped(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		n.Stop()
		if err := adminCLI(t, n).Deactivate(ctx, bob.UserID, false); err != nil {
			t.Fatalf("deactivate: %v", err)
		}
		n = n.Restart()
		if m := n.Rooms.Memberships(bob.UserID)[room]; m != "leave" {
			t.Fatalf("bob's membership after the restart: %q, want leave", m)
		}
		n.Do(t, "GET", "/_matrix/client/v3/account/whoami", bob.AccessToken, nil).Want(t, 401, "M_UNKNOWN_TOKEN")
	})
}
