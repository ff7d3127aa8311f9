package federation_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestJoinsDuringResync: while B's state of A's room is partial, B's users'
// joins go through A with members omitted and are taken on top of B's own
// state (B lacks the members, so it cannot tell whether the room lets them
// in): erin, banned before B joined, is refused by A; dave joins beside
// bob, is banned on A and is then refused by B at once; carol joins; bob leaves and joins again. The one resync that bob's
// first join started completes the state for all of them (Complement's
// "Leave during resync" subtests: a second partial join, a rejoin and
// another user's join before the resync completes, a remote ban).
func TestJoinsDuringResync(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice := a.Register("alice")
	bob, carol, dave, erin := b.Register("bob"), b.Register("carol"), b.Register("dave"), b.Register("erin")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	bigRoom(t, a, roomID, 20)
	// erin is banned before B is in the room: her ban is among the
	// members B's partial state lacks.
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: erin.UserID}); err != nil {
		t.Fatalf("alice bans erin: %v", err)
	}
	g := gate(b)
	join := func(c *mautrix.Client) error {
		_, err := c.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}})
		return err
	}
	membership := func(n *testnode.Node, user id.UserID, want string) {
		t.Helper()
		testnode.WaitFor(t, 20*time.Second, n.Config.ServerName+" sees "+string(user)+" "+want, func() bool {
			return n.Rooms.Membership(user, roomID) == want
		})
	}
	if err := join(bob); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	select {
	case <-g.asked:
	case <-time.After(30 * time.Second):
		t.Fatal("B never asked for the full state")
	}

	if b.Rooms.Membership(erin.UserID, roomID) != "" {
		t.Fatal("B's partial state holds erin's ban")
	}
	if code, status := testnode.ErrCode(join(erin)); status != 403 || code != "M_FORBIDDEN" {
		t.Fatalf("erin's join, banned in the state B lacks: %s %d, want A's 403 M_FORBIDDEN", code, status)
	}
	if got := b.Rooms.Membership(erin.UserID, roomID); got == "join" {
		t.Fatal("B let erin in")
	}

	if err := join(dave); err != nil {
		t.Fatalf("dave joins during the resync: %v", err)
	}
	membership(a, dave.UserID, "join")
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: dave.UserID}); err != nil {
		t.Fatalf("alice bans dave: %v", err)
	}
	membership(b, dave.UserID, "ban")
	if code, status := testnode.ErrCode(join(dave)); status != 403 || code != "M_FORBIDDEN" {
		t.Fatalf("dave's join after his ban: %s %d, want 403 M_FORBIDDEN", code, status)
	}

	if err := join(carol); err != nil {
		t.Fatalf("carol joins during the resync: %v", err)
	}
	membership(a, carol.UserID, "join")
	membership(b, carol.UserID, "join")

	if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
		t.Fatalf("bob leaves: %v", err)
	}
	membership(a, bob.UserID, "leave")
	if err := join(bob); err != nil {
		t.Fatalf("bob joins again during the resync: %v", err)
	}
	membership(a, bob.UserID, "join")
	membership(b, bob.UserID, "join")

	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the resync finished while its fetch was held")
	}
	g.mu.Lock()
	asked := slices.Compact(slices.Clone(g.askedAt))
	g.mu.Unlock()
	if len(asked) != 1 {
		t.Errorf("B asked /state_ids at %v, want one resync at bob's first join", asked)
	}
	close(g.open)
	waitSameState(t, a, b, roomID)
	for user, want := range map[id.UserID]string{bob.UserID: "join", carol.UserID: "join", dave.UserID: "ban", erin.UserID: "ban"} {
		if got := b.Rooms.Membership(user, roomID); got != want {
			t.Errorf("B after the resync: %s is %q, want %q", user, got, want)
		}
	}
}
