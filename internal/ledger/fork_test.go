package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/testnode"
)

// pointAt points c at n, a restarted node (its client port changes; the
// access token lives in the database and still works).
func pointAt(t *testing.T, c *mautrix.Client, n *testnode.Node) {
	t.Helper()
	u, err := url.Parse(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.HomeserverURL = u
}

// hasEvent reports whether the node has stored the event in its timeline.
func hasEvent(n *testnode.Node, evID id.EventID) bool {
	ev, err := n.Rooms.Event(context.Background(), evID)
	return err == nil && ev.Pos != 0
}

// TestToggleThatLostResolutionSwitchesNothing: alice on A and bob on B,
// both with power 100, share a room without the ledger. While B is down,
// alice demotes bob; while A is down, bob, not knowing, turns the ledger on
// at B, and B logs his message as the room's state there says. When both
// are back, state resolution drops bob's toggle (he had no power for it):
// the room's resolved state has no ledger on either node, so the messages
// sent after are logged by neither. (The follower used to decide from the
// toggle's content, and B kept logging the room.)
func TestToggleThatLostResolutionSwitchesNothing(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	alice, bob := a.Register("alice"), b.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoom(ctx, string(room), &mautrix.ReqJoinRoom{Via: []string{aName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	var pl event.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.Users[bob.UserID] = 100
	promotion := testnode.SendState(t, alice, room, event.StatePowerLevels, "", &pl)
	testnode.WaitFor(t, 20*time.Second, "bob's promotion at B", func() bool { return hasEvent(b, promotion) })

	// A's side, with B down: bob is demoted.
	b.Stop()
	pl.Users[bob.UserID] = 0
	testnode.SendState(t, alice, room, event.StatePowerLevels, "", &pl)

	// B's side, with A down: bob turns the ledger on.
	a.Stop()
	b = b.Restart()
	pointAt(t, bob, b)
	toggle := testnode.SendState(t, bob, room, ledgerType, "", map[string]any{"enabled": true})
	during := testnode.SendText(t, bob, room, "B during the split")
	wantLogged(t, b, bob, room, toggle)
	wantLogged(t, b, bob, room, during)

	// Both up: the queues deliver, and the nodes resolve the state.
	a = a.Restart()
	pointAt(t, alice, a)
	for _, n := range []struct {
		node *testnode.Node
		dest string
	}{{a, bName}, {b, aName}} {
		if ok, err := n.node.Federation.Outbox.ResetBackoff(ctx, n.dest); !ok || err != nil {
			t.Fatalf("reset %s's backoff for %s: %v, %v", n.node.Config.ServerName, n.dest, ok, err)
		}
	}
	testnode.WaitFor(t, 20*time.Second, "B dropping bob's toggle from the room's state", func() bool {
		ev, err := b.Rooms.StateEvent(ctx, room, ledgerType.Type, "")
		return err == nil && ev == nil
	})
	if ev, err := a.Rooms.StateEvent(ctx, room, ledgerType.Type, ""); err != nil || ev != nil {
		t.Fatalf("A's ledger state after the split: %v, %v; want none", ev, err)
	}

	after := testnode.SendText(t, alice, room, "A after the split")
	testnode.WaitFor(t, 20*time.Second, "B receiving alice's message", func() bool { return hasEvent(b, after) })
	wantNotLogged(t, a, alice, room, after)
	wantNotLogged(t, b, bob, room, after)
	fromB := testnode.SendText(t, bob, room, "B after the split")
	wantNotLogged(t, b, bob, room, fromB)
}

// TestBackfilledHistoryNotLogged: B, logging every room, joins alice's
// room on A after its first messages; bob paging back makes B fetch them
// (backfill). They stay out of B's log, and asking for a proof of one says
// why (backfilled history) rather than only "not in the ledger"; bob's own
// message after the join is logged.
func TestBackfilledHistoryNotLogged(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca, func(c *config.Config) { c.Ledger = "all" })
	alice, bob := a.Register("alice"), b.Register("bob")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	var before []id.EventID
	for i := range 5 {
		before = append(before, testnode.SendText(t, alice, room, fmt.Sprint("before bob ", i)))
	}
	if _, err := bob.JoinRoom(ctx, string(room), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	if _, err := bob.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 50); err != nil {
		t.Fatalf("bob pages back: %v", err)
	}
	ev, err := b.Rooms.Event(ctx, before[0])
	if err != nil || !ev.Backfilled() {
		t.Fatalf("alice's first message on B: %+v, %v; want it backfilled", ev, err)
	}
	wantNotLogged(t, b, bob, room, before[0])
	if _, err := b.Ledger.Prover().Prove(ctx, string(before[0])); !errors.Is(err, ledger.ErrBackfilled) {
		t.Fatalf("proof of a backfilled event: %v, want ErrBackfilled", err)
	}
	r := testnode.Call(t, bob, "GET", proofPath(room, before[0]), nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	if !strings.Contains(string(r.Body), "backfill") {
		t.Fatalf("the proof endpoint's answer for a backfilled event: %s", r.Body)
	}
	wantLogged(t, b, bob, room, testnode.SendText(t, bob, room, "after the join"))
}
