package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/testnode"
)

// reconnect points c at n, a restarted node (its client port changes; the
// access token lives in the database and still works).
func reconnect(t *testing.T, c *mautrix.Client, n *testnode.Node) {
	t.Helper()
	u, err := url.Parse(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.HomeserverURL = u
}

// currentState is the room's current state as c's /state shows it: the
// event ID of each (type, state_key).
func currentState(t *testing.T, c *mautrix.Client, roomID id.RoomID) map[string]id.EventID {
	t.Helper()
	resp := testnode.Call(t, c, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(string(roomID))+"/state", nil)
	if resp.Status != 200 {
		t.Fatalf("%s's /state of %s: %d %s", c.UserID, roomID, resp.Status, resp.Body)
	}
	state := map[string]id.EventID{}
	for _, ev := range testnode.Decode[[]*event.Event](t, resp.Body) {
		state[ev.Type.Type+"|"+ev.GetStateKey()] = ev.ID
	}
	return state
}

// messageBodies pages c's /messages of the room backwards to its start and
// returns the bodies of its m.room.message events, oldest first.
func messageBodies(t *testing.T, c *mautrix.Client, roomID id.RoomID) []string {
	t.Helper()
	var bodies []string
	from := ""
	for range 50 {
		resp, err := c.Messages(context.Background(), roomID, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatalf("%s's /messages of %s: %v", c.UserID, roomID, err)
		}
		for _, ev := range resp.Chunk {
			if ev.Type == event.EventMessage {
				body, _ := ev.Content.Raw["body"].(string)
				bodies = append(bodies, body)
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			slices.Reverse(bodies)
			return bodies
		}
		from = resp.End
	}
	t.Fatalf("%s's /messages of %s never ends", c.UserID, roomID)
	return nil
}

// containsAll reports whether every one of want is in got.
func containsAll(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// eventually polls cond every 100 ms for up to 20 s, and fails the test
// with what (and the last explanation cond gave) if it never holds.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("%s never happened: %s", what, last)
}

// TestNetsplitAcrossNodes: alice on A and bob on B (both with power 100)
// share a room. B goes down; alice changes power levels (demoting bob),
// join rules and the name, bans mallory and sends messages, with A's queue
// for B trimmed so that B must fetch the older ones with
// get_missing_events. Then A goes down and B comes back: bob, not knowing
// of his demotion, changes the name and the topic and sends messages. A
// comes back; both queues deliver. Both nodes end with the same current
// state (state resolution over the conflicting changes), every message of
// both sides is in /messages on each, and messages sent after go both ways.
// Node-level netsplits are made by stopping nodes; the engine-level
// conflicts are also covered by internal/rooms TestFederatedNetsplit.
func TestNetsplitAcrossNodes(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	aName, bName := a.Config.ServerName, b.Config.ServerName
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID, alias := publicRoomWithAlias(t, a, alice, "split")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	bobSync := newSyncer(t, bob)
	var pl event.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.Users[bob.UserID] = 100
	plID := testnode.SendState(t, alice, roomID, event.StatePowerLevels, "", &pl)
	bobSync.waitFor(t, roomID, "bob's promotion", func(ev *event.Event) bool { return ev.ID == plID })

	// A's side, with B down.
	b.Stop()
	fed.SetMaxQueuedPDUs(a.Federation.Outbox, 2)
	pl.Users[bob.UserID] = 0
	testnode.SendState(t, alice, roomID, event.StatePowerLevels, "", &pl)
	testnode.SendState(t, alice, roomID, event.StateJoinRules, "", map[string]any{"join_rule": "invite"})
	testnode.SendState(t, alice, roomID, event.StateRoomName, "", map[string]any{"name": "A's name"})
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: id.UserID("@mallory:" + aName)}); err != nil {
		t.Fatalf("alice bans mallory: %v", err)
	}
	var want []string
	for i := range 4 {
		want = append(want, fmt.Sprintf("A during the split %d", i))
		testnode.SendText(t, alice, roomID, want[len(want)-1])
	}
	eventually(t, "A trimming its queue for B", func() (bool, string) {
		n := queued(t, a, bName)
		return n <= 2, fmt.Sprintf("%d queued", n)
	})

	// B's side, with A down.
	a.Stop()
	b = b.Restart()
	reconnect(t, bob, b)
	testnode.SendState(t, bob, roomID, event.StateRoomName, "", map[string]any{"name": "B's name"})
	testnode.SendState(t, bob, roomID, event.StateTopic, "", map[string]any{"topic": "B's topic"})
	for i := range 2 {
		want = append(want, fmt.Sprintf("B during the split %d", i))
		testnode.SendText(t, bob, roomID, want[len(want)-1])
	}

	// Both up: each retries the other now.
	a = a.Restart()
	reconnect(t, alice, a)
	fed.SetMaxQueuedPDUs(a.Federation.Outbox, 2)
	for _, n := range []struct {
		node *testnode.Node
		dest string
	}{{a, bName}, {b, aName}} {
		if ok, err := n.node.Federation.Outbox.ResetBackoff(ctx, n.dest); !ok || err != nil {
			t.Fatalf("reset %s's backoff for %s: %v, %v", n.node.Config.ServerName, n.dest, ok, err)
		}
	}
	eventually(t, "both nodes agreeing on the room's state", func() (bool, string) {
		onA, onB := currentState(t, alice, roomID), currentState(t, bob, roomID)
		return maps.Equal(onA, onB), fmt.Sprintf("A: %v\nB: %v", onA, onB)
	})
	for _, c := range []*mautrix.Client{alice, bob} {
		eventually(t, string(c.UserID)+"'s /messages showing both sides", func() (bool, string) {
			got := messageBodies(t, c, roomID)
			return containsAll(got, want), fmt.Sprintf("%q", got)
		})
	}
	var name struct{ Name string }
	if err := bob.StateEvent(ctx, roomID, event.StateRoomName, "", &name); err != nil || name.Name == "" {
		t.Fatalf("the room's name after the split: %+v, %v", name, err)
	}

	// After the split, messages go both ways at once.
	aliceSync, bobSync := newSyncer(t, alice), newSyncer(t, bob)
	testnode.SendText(t, bob, roomID, "B after the split")
	aliceSync.waitText(t, roomID, "B after the split")
	testnode.SendText(t, alice, roomID, "A after the split")
	bobSync.waitText(t, roomID, "A after the split")
}

// TestAcknowledgedTransactionSurvivesRestart: once B has answered A's
// /send (A's queue for B is empty), B's events are stored: B stopped right
// then and restarted has every one of them in /messages. testnode stops a
// node gracefully only (no kill -9); what makes this hold under a crash is
// that inbound PDUs are committed before /send answers.
func TestAcknowledgedTransactionSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID, alias := publicRoomWithAlias(t, a, alice, "durable")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("message %d", i))
		testnode.SendText(t, alice, roomID, want[i])
	}
	waitFor(t, func() bool { return queued(t, a, b.Config.ServerName) == 0 }, "B to acknowledge A's transactions")
	b = b.Restart()
	reconnect(t, bob, b)
	if got := messageBodies(t, bob, roomID); !containsAll(got, want) {
		t.Fatalf("bob's /messages after B's restart: %q, want all of %q", got, want)
	}
}

// TestRoomUpgradeAcrossServers: alice on A upgrades a room bob on B is
// in; B shows bob the tombstone, and bob joins the new room through A.
func TestRoomUpgradeAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID, alias := publicRoomWithAlias(t, a, alice, "old")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	bobSync := newSyncer(t, bob)
	aliceSync := newSyncer(t, alice)

	resp := testnode.Call(t, alice, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(string(roomID))+"/upgrade", map[string]any{"new_version": "11"})
	newRoom := id.RoomID(resp.OK(t)["replacement_room"].(string))
	tombstone := bobSync.waitFor(t, roomID, "the tombstone", func(ev *event.Event) bool { return ev.Type == event.StateTombstone })
	if got := tombstone.Content.Raw["replacement_room"]; got != string(newRoom) {
		t.Fatalf("tombstone names %v, want %s", got, newRoom)
	}
	if _, err := bob.JoinRoom(ctx, string(newRoom), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins the new room through A: %v", err)
	}
	aliceSync.waitMembership(t, newRoom, bob.UserID, "join")
	var create event.CreateEventContent
	if err := bob.StateEvent(ctx, newRoom, event.StateCreate, "", &create); err != nil {
		t.Fatal(err)
	}
	if create.Predecessor == nil || create.Predecessor.RoomID != roomID {
		t.Fatalf("the new room's predecessor on B: %+v", create.Predecessor)
	}
	testnode.SendText(t, bob, newRoom, "hello in the new room")
	aliceSync.waitText(t, newRoom, "hello in the new room")
}

// TestSyncTimelineGapAcrossServers: bob on B is in alice's room on A. B
// goes down while alice sends 30 messages, and A's queue for B keeps only
// 2; B comes back and gets the rest of the way with get_missing_events
// (10 at most), which leaves a gap. Bob's incremental /sync shows the room
// limited, without what came before the gap, and /messages from its
// prev_batch fills the gap from A: every missed message, in order.
func TestSyncTimelineGapAcrossServers(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	bName := b.Config.ServerName
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID, alias := publicRoomWithAlias(t, a, alice, "gap")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	bobSync := newSyncer(t, bob)
	before := testnode.SendText(t, alice, roomID, "before the gap")
	bobSync.waitText(t, roomID, "before the gap")
	since := testnode.SyncOnce(t, bob, "", 0).NextBatch

	b.Stop()
	fed.SetMaxQueuedPDUs(a.Federation.Outbox, 2)
	missed := sendTexts(t, alice, roomID, 30, "missed")
	eventually(t, "A trimming its queue for B", func() (bool, string) {
		n := queued(t, a, bName)
		return n <= 2, fmt.Sprintf("%d queued", n)
	})
	b = b.Restart()
	reconnect(t, bob, b)
	if ok, err := a.Federation.Outbox.ResetBackoff(ctx, bName); !ok || err != nil {
		t.Fatalf("reset A's backoff for B: %v, %v", ok, err)
	}
	after := testnode.SendText(t, alice, roomID, "after the gap")

	filter := url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`)
	var timeline struct {
		Events    []*event.Event `json:"events"`
		Limited   bool           `json:"limited"`
		PrevBatch string         `json:"prev_batch"`
	}
	eventually(t, "bob's /sync showing the message after the gap", func() (bool, string) {
		resp := testnode.Call(t, bob, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), nil)
		if resp.Status != 200 {
			return false, string(resp.Body)
		}
		var s struct {
			Rooms struct {
				Join map[id.RoomID]struct {
					Timeline json.RawMessage `json:"timeline"`
				} `json:"join"`
			} `json:"rooms"`
		}
		if err := json.Unmarshal(resp.Body, &s); err != nil {
			return false, err.Error()
		}
		if err := json.Unmarshal(s.Rooms.Join[roomID].Timeline, &timeline); err != nil {
			return false, err.Error()
		}
		return slices.Contains(messageIDs(timeline.Events), after), string(s.Rooms.Join[roomID].Timeline)
	})
	if !timeline.Limited {
		t.Errorf("the timeline after the gap is not limited")
	}
	if slices.Contains(messageIDs(timeline.Events), before) {
		t.Errorf("the limited timeline holds the message from before the gap")
	}
	// The timeline holds the gap's newer side; /messages from prev_batch
	// the rest, down to the message before the gap.
	older := messageIDs(pageBackIDs(t, bob, roomID, timeline.PrevBatch, 10))
	slices.Reverse(older)
	all := append(older, messageIDs(timeline.Events)...)
	want := append(append([]id.EventID{before}, missed...), after)
	if i := slices.Index(all, before); i < 0 || !slices.Equal(all[i:], want) {
		t.Errorf("bob's history around the gap: %d messages (%v), want the %d alice sent from before the gap on, in order", len(all), all, len(want))
	}
}
