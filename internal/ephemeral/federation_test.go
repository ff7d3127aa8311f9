package ephemeral_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestEDUsRefused: typing and receipt EDUs about a user of another server
// than the origin, or about a user who is not joined to the room, are
// refused with M_FORBIDDEN and change nothing.
func TestEDUsRefused(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob, _, roomID := setup(t, n)
	ev, err := alice.SendText(ctx, roomID, "hi")
	if err != nil {
		t.Fatal(err)
	}
	const origin = "remote.example"
	cases := []struct {
		name    string
		handle  func(context.Context, string, json.RawMessage) error
		content any
	}{
		{"typing of a local user", n.Ephemeral.HandleTyping,
			map[string]any{"room_id": roomID, "user_id": alice.UserID, "typing": true}},
		{"typing of a user not in the room", n.Ephemeral.HandleTyping,
			map[string]any{"room_id": roomID, "user_id": "@zed:" + origin, "typing": true}},
		{"receipt of a local user", n.Ephemeral.HandleReceipt,
			map[string]any{string(roomID): map[string]any{"m.read": map[string]any{string(alice.UserID): map[string]any{
				"event_ids": []string{string(ev.EventID)}, "data": map[string]any{"ts": 1}}}}}},
		{"receipt of a user not in the room", n.Ephemeral.HandleReceipt,
			map[string]any{string(roomID): map[string]any{"m.read": map[string]any{"@zed:" + origin: map[string]any{
				"event_ids": []string{string(ev.EventID)}, "data": map[string]any{"ts": 1}}}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := json.Marshal(c.content)
			if err != nil {
				t.Fatal(err)
			}
			err = c.handle(ctx, origin, raw)
			if e, ok := mxhttp.AsError(err); !ok || e.Code != "M_FORBIDDEN" {
				t.Fatalf("got %v, want M_FORBIDDEN", err)
			}
		})
	}
	if users := n.Ephemeral.Typing(roomID); len(users) != 0 {
		t.Errorf("typing after refused EDUs: %v", users)
	}
	s := testnode.SyncOnce(t, bob, "", 0)
	for _, e := range s.Rooms.Join[roomID].Ephemeral.Events {
		if e.Type.Type == "m.receipt" {
			t.Errorf("a refused receipt reached /sync: %v", e.Content.Raw)
		}
	}
	if err := n.Ephemeral.HandleTyping(ctx, origin, json.RawMessage(`{"room_id": 1}`)); err == nil {
		t.Error("malformed m.typing accepted")
	}
}

// joinedOn waits until c's server shows user joined to the room.
func joinedOn(t *testing.T, c *mautrix.Client, roomID id.RoomID, user id.UserID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		members, err := c.JoinedMembers(context.Background(), roomID)
		if err == nil && hasJoined(members, user) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s's server does not show %s joined to %s", c.UserID, user, roomID)
}

func hasJoined(m *mautrix.RespJoinedMembers, user id.UserID) bool {
	_, ok := m.Joined[user]
	return ok
}

// sharedRoom starts two federating nodes (with opts) and returns Alice on
// the first and Bob on the second, both joined to Alice's public room.
func sharedRoom(t *testing.T, opts ...testnode.Option) (alice, bob *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	_, _, alice, bob, roomID = sharedRoomNodes(t, opts...)
	return alice, bob, roomID
}

// sharedRoomNodes is sharedRoom, with the two nodes.
func sharedRoomNodes(t *testing.T, opts ...testnode.Option) (a, b *testnode.Node, alice, bob *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	ca := testnode.NewCA(t)
	a, b = testnode.StartFederating(t, testnode.SQLite, ca, opts...), testnode.StartFederating(t, testnode.SQLite, ca, opts...)
	alice, bob = a.Register("alice"), b.Register("bob")
	roomID = testnode.PublicRoom(t, alice)
	if _, err := bob.JoinRoom(context.Background(), roomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins over federation: %v", err)
	}
	joinedOn(t, alice, roomID, bob.UserID)
	joinedOn(t, bob, roomID, bob.UserID)
	return a, b, alice, bob, roomID
}

// TestRemoteReceiptTimestamp: a read receipt from another server is
// stored with the time it carries, unless that time is missing or in the
// future (a clock running ahead): then with the time it arrived.
func TestRemoteReceiptTimestamp(t *testing.T) {
	ctx := context.Background()
	a, b, alice, bob, roomID := sharedRoomNodes(t)
	receiptEDU := func(evID id.EventID, ts int64) json.RawMessage {
		return readReceiptEDU(t, roomID, bob.UserID, evID, ts)
	}
	past := time.Now().Add(-time.Hour).UnixMilli()
	for _, c := range []struct {
		name string
		ts   int64
		want int64 // 0: the time it arrived
	}{
		{"a time past", past, past},
		{"a time 10 years ahead", time.Now().AddDate(10, 0, 0).UnixMilli(), 0},
		{"no time", 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			evID := sendText(t, alice, roomID, c.name)
			before := time.Now().UnixMilli()
			if err := a.Ephemeral.HandleReceipt(ctx, b.Config.ServerName, receiptEDU(evID, c.ts)); err != nil {
				t.Fatalf("the receipt EDU: %v", err)
			}
			after := time.Now().UnixMilli()
			got := receipt(testnode.SyncOnce(t, alice, "", 0), roomID, evID, "m.read", bob.UserID)
			if got == nil {
				t.Fatal("bob's receipt is not in alice's /sync")
			}
			ts, _ := got["ts"].(float64)
			if c.want == 0 && (int64(ts) < before || int64(ts) > after) {
				t.Errorf("stored ts %d, want the arrival time (%d to %d)", int64(ts), before, after)
			}
			if c.want != 0 && int64(ts) != c.want {
				t.Errorf("stored ts %d, want %d", int64(ts), c.want)
			}
		})
	}
}

// readReceiptEDU is the content of an m.receipt EDU: user has read up to
// evID in roomID at ts.
func readReceiptEDU(t *testing.T, roomID id.RoomID, user id.UserID, evID id.EventID, ts int64) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(map[string]any{string(roomID): map[string]any{"m.read": map[string]any{string(user): map[string]any{
		"event_ids": []string{string(evID)}, "data": map[string]any{"ts": ts}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestRemoteReceiptForUnknownEvent: a remote user's read receipt for an
// event this server does not have (yet) is stored and shown in /sync like
// any other (Complement's CanReceiveReceiptDuringPartialStateJoin); one for
// a known event replaces it, one for an unknown event does not replace one
// for a known event (it may be older: the receipt would move backwards),
// and one for an event of another room is ignored.
func TestRemoteReceiptForUnknownEvent(t *testing.T) {
	ctx := context.Background()
	a, b, alice, bob, roomID := sharedRoomNodes(t)
	other := testnode.PublicRoom(t, alice)
	otherEv := sendText(t, alice, other, "elsewhere")
	known := sendText(t, alice, roomID, "known")
	unknown := id.EventID("$not-known-here")
	steps := []struct {
		name       string
		evID       id.EventID
		want, gone id.EventID
	}{
		{"an unknown event", unknown, unknown, ""},
		{"a known event after it", known, known, unknown},
		{"an unknown event after a known one", unknown, known, unknown},
		{"an event of another room", otherEv, known, otherEv},
	}
	for i, st := range steps {
		ts := time.Now().Add(-time.Hour).UnixMilli() + int64(i)
		if err := a.Ephemeral.HandleReceipt(ctx, b.Config.ServerName, readReceiptEDU(t, roomID, bob.UserID, st.evID, ts)); err != nil {
			t.Fatalf("%s: the receipt EDU: %v", st.name, err)
		}
		s := testnode.SyncOnce(t, alice, "", 0)
		if receipt(s, roomID, st.want, "m.read", bob.UserID) == nil {
			t.Errorf("%s: bob's receipt for %s is not in alice's /sync", st.name, st.want)
		}
		if st.gone != "" && receipt(s, roomID, st.gone, "m.read", bob.UserID) != nil {
			t.Errorf("%s: bob's receipt for %s is still in alice's /sync", st.name, st.gone)
		}
	}
}

// heldSends holds a node's outgoing federation transactions until open
// is closed.
type heldSends struct {
	http.RoundTripper
	open chan struct{}
}

func (h heldSends) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.URL.Path, "/v1/send/") {
		select {
		case <-h.open:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return h.RoundTripper.RoundTrip(req)
}

// TestRemoteReceiptMovesForwardOnceKnown: bob's receipt for his message X
// reaches A before X does (B's transactions held), and is stored; once A
// has X, a late receipt of bob's for an older event (a retried EDU) leaves
// his receipt at X: a receipt stored for an event then unknown is placed
// by the event's position once it is known.
func TestRemoteReceiptMovesForwardOnceKnown(t *testing.T) {
	ctx := context.Background()
	a, b, alice, bob, roomID := sharedRoomNodes(t)
	older := sendText(t, alice, roomID, "older")
	testnode.WaitFor(t, 20*time.Second, "B has alice's message", func() bool {
		_, err := b.Rooms.Event(ctx, older)
		return err == nil
	})
	held := heldSends{RoundTripper: b.Federation.Client.HTTP.Transport, open: make(chan struct{})}
	hc := *b.Federation.Client.HTTP
	hc.Transport = held
	b.Federation.Client.HTTP = &hc
	x := sendText(t, bob, roomID, "x")
	if _, err := a.Rooms.Event(ctx, x); err == nil {
		t.Fatal("A has bob's message while B's transactions are held")
	}
	ts := time.Now().Add(-time.Minute).UnixMilli()
	if err := a.Ephemeral.HandleReceipt(ctx, b.Config.ServerName, readReceiptEDU(t, roomID, bob.UserID, x, ts)); err != nil {
		t.Fatalf("the receipt EDU for x: %v", err)
	}
	close(held.open)
	testnode.WaitFor(t, 20*time.Second, "A has bob's message", func() bool {
		_, err := a.Rooms.Event(ctx, x)
		return err == nil
	})
	if err := a.Ephemeral.HandleReceipt(ctx, b.Config.ServerName, readReceiptEDU(t, roomID, bob.UserID, older, ts+1)); err != nil {
		t.Fatalf("the receipt EDU for the older event: %v", err)
	}
	s := testnode.SyncOnce(t, alice, "", 0)
	if receipt(s, roomID, x, "m.read", bob.UserID) == nil || receipt(s, roomID, older, "m.read", bob.UserID) != nil {
		t.Fatal("bob's receipt moved back from x to the older event")
	}
}

// TestTypingAndReceiptsAcrossServers: in a room shared by Alice on node A
// and Bob on node B, each sees the other start and stop typing and the
// other's read receipt, through m.typing and m.receipt EDUs; presence
// stays on each server (federation_presence is off).
func TestTypingAndReceiptsAcrossServers(t *testing.T) {
	ctx := context.Background()
	alice, bob, roomID := sharedRoom(t)
	if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "away"}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ typist, watcher *mautrix.Client }{{alice, bob}, {bob, alice}} {
		since := testnode.SyncOnce(t, c.watcher, "", 0).NextBatch
		ch := pollUntil(c.watcher, since, func(s *mautrix.RespSync) bool {
			users, _ := typingUsers(s, roomID)
			return slices.Contains(users, string(c.typist.UserID))
		})
		if _, err := c.typist.UserTyping(ctx, roomID, true, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		s := await(t, string(c.typist.UserID)+" typing, seen across servers", ch)
		ch = pollUntil(c.watcher, s.NextBatch, func(s *mautrix.RespSync) bool {
			users, ok := typingUsers(s, roomID)
			return ok && !slices.Contains(users, string(c.typist.UserID))
		})
		if _, err := c.typist.UserTyping(ctx, roomID, false, 0); err != nil {
			t.Fatal(err)
		}
		await(t, string(c.typist.UserID)+" stops typing, seen across servers", ch)
	}
	// Alice's presence changed before her typing, which Bob has seen.
	if p, err := bob.GetPresence(ctx, alice.UserID); err != nil || p.StatusMsg == "away" {
		t.Errorf("Bob's server has Alice's presence %+v (%v) with federation_presence off", p, err)
	}

	evID := sendText(t, alice, roomID, "read me")
	since := testnode.SyncOnce(t, alice, "", 0).NextBatch
	ch := pollUntil(alice, since, func(s *mautrix.RespSync) bool {
		return receipt(s, roomID, evID, "m.read", bob.UserID) != nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for { // Bob's server must have the event before he can mark it read.
		err := bob.SendReceipt(ctx, roomID, evID, event.ReceiptTypeRead, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's receipt: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	await(t, "bob's receipt, seen across servers", ch)
}

// TestPresenceAcrossServers: with federation_presence on, Bob on node B
// sees the presence Alice sets on node A, in /sync and GET /presence.
func TestPresenceAcrossServers(t *testing.T) {
	ctx := context.Background()
	alice, bob, _ := sharedRoom(t, func(c *config.Config) { c.FederationPresence = true })
	since := testnode.SyncOnce(t, bob, "", 0).NextBatch
	ch := pollUntil(bob, since, func(s *mautrix.RespSync) bool {
		p := presenceOf(s, alice.UserID)
		return p["presence"] == "unavailable" && p["status_msg"] == "away"
	})
	if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "away"}); err != nil {
		t.Fatal(err)
	}
	await(t, "Alice's presence on Bob's server", ch)
	p, err := bob.GetPresence(ctx, alice.UserID)
	if err != nil || p.Presence != event.PresenceUnavailable || p.StatusMsg != "away" {
		t.Errorf("GET /presence of Alice on Bob's server: %+v, %v", p, err)
	}
}
