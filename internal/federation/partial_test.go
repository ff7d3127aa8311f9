package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// gatedRemote holds a node's /state_ids and /state requests (the
// partial-state resync's fetch) until open is closed, so a test can act while the room's state
// is still partial.
type gatedRemote struct {
	rooms.Remote
	open  chan struct{}
	asked chan struct{} // gets a value each time the state is asked

	mu      sync.Mutex
	askedAt []id.EventID // the events /state_ids was asked about
}

func gate(n *testnode.Node) *gatedRemote {
	g := &gatedRemote{Remote: n.Rooms.Remote, open: make(chan struct{}), asked: make(chan struct{}, 16)}
	n.Rooms.Remote = g
	return g
}

func (g *gatedRemote) GetStateIDs(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID) ([]id.EventID, []id.EventID, error) {
	g.mu.Lock()
	g.askedAt = append(g.askedAt, eventID)
	g.mu.Unlock()
	if err := g.wait(ctx); err != nil {
		return nil, nil, err
	}
	return g.Remote.GetStateIDs(ctx, server, roomID, eventID)
}

func (g *gatedRemote) wait(ctx context.Context) error {
	select {
	case g.asked <- struct{}{}:
	default:
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gatedRemote) GetState(ctx context.Context, server string, roomID id.RoomID, eventID id.EventID, each func(bool, json.RawMessage) error) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.Remote.GetState(ctx, server, roomID, eventID, each)
}

// bigRoom fills a room of a's with n members (a's users, written straight
// through its engine, as BenchmarkJoinLargeRoom does) and one other state
// event, and returns the members.
func bigRoom(t testing.TB, a *testnode.Node, roomID id.RoomID, n int) []id.UserID {
	t.Helper()
	ctx := context.Background()
	key := "k"
	state := []rooms.Proto{{Type: "org.example.state", StateKey: &key, Sender: roomCreator(t, a, roomID),
		Content: json.RawMessage(`{"n":1}`)}}
	var members []id.UserID
	for i := range n {
		user := fmt.Sprintf("@member%d:%s", i, a.Config.ServerName)
		members = append(members, id.UserID(user))
		state = append(state, rooms.Proto{Type: "m.room.member", StateKey: &user, Sender: id.UserID(user),
			Content: json.RawMessage(fmt.Sprintf(`{"membership":"join","displayname":"Member %d"}`, i))})
	}
	for chunk := range slices.Chunk(state, 50) {
		if _, err := a.Rooms.SendMany(ctx, roomID, chunk); err != nil {
			t.Fatalf("room state on %s: %v", a.Config.ServerName, err)
		}
	}
	return members
}

func roomCreator(t testing.TB, n *testnode.Node, roomID id.RoomID) id.UserID {
	t.Helper()
	create, err := n.Rooms.StateEvent(context.Background(), roomID, "m.room.create", "")
	if err != nil {
		t.Fatalf("create event: %v", err)
	}
	return create.Sender
}

// stateMap is a room's current state on a node: event IDs by type and
// state key.
func stateMap(t testing.TB, n *testnode.Node, roomID id.RoomID) map[string]id.EventID {
	t.Helper()
	evs, err := n.Rooms.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatalf("current state on %s: %v", n.Config.ServerName, err)
	}
	out := map[string]id.EventID{}
	for _, ev := range evs {
		out[ev.Type+"|"+*ev.StateKey] = ev.ID
	}
	return out
}

// waitSameState waits until b's state of the room is complete and the
// same as a's.
func waitSameState(t testing.TB, a, b *testnode.Node, roomID id.RoomID) {
	t.Helper()
	var sa, sb map[string]id.EventID
	testnode.WaitFor(t, 30*time.Second, "the same complete state on both nodes", func() bool {
		if b.Rooms.HasPartialState(context.Background(), roomID) {
			return false
		}
		sa, sb = stateMap(t, a, roomID), stateMap(t, b, roomID)
		return maps.Equal(sa, sb)
	})
}

// TestPartialStateJoin: bob of node B joins a room of node A with 300
// members; B asks send_join with omit_members, so the room is usable at
// once with partial state (held partial here by gating B's /state fetch):
// bob sends, reads his message back and the room's other state, alice on
// A gets the message, /joined_members waits for the full state, and B
// answers another server's make_join 404 and /state and /state_ids 403
// meanwhile, while bob's /state waits. Then
// members join, leave and are kicked on A while B's state is partial; once
// B's resync runs, its state is complete and the same as A's.
func TestPartialStateJoin(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	members := bigRoom(t, a, roomID, 300)
	g := gate(b)

	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	select {
	case <-g.asked:
	case <-time.After(30 * time.Second):
		t.Fatal("B never asked for the full state")
	}
	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the room is not partial on B after a join with members omitted")
	}
	if n := len(b.Rooms.Members(ctx, roomID)); n >= len(members) {
		t.Fatalf("B knows %d members of the partial room, want the few send_join kept", n)
	}

	// Usable at once: send, read, other state.
	sent := testnode.SendText(t, bob, roomID, "hello while partial")
	msgs, err := bob.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatalf("bob's /messages: %v", err)
	}
	if !slices.ContainsFunc(msgs.Chunk, func(ev *event.Event) bool { return ev.ID == sent }) {
		t.Fatalf("bob's /messages lacks his message %s", sent)
	}
	var st map[string]any
	if err := bob.StateEvent(ctx, roomID, event.NewEventType("org.example.state"), "k", &st); err != nil || st["n"] != float64(1) {
		t.Fatalf("bob reads the room's other state: %v %v", st, err)
	}
	testnode.WaitFor(t, 20*time.Second, "alice's node gets bob's message", func() bool {
		ev, err := a.Rooms.Event(ctx, sent)
		return err == nil && ev != nil
	})

	// Membership changes on A during the resync.
	leaver, kicked := members[5], members[7]
	leave, kick := "leave", string(kicked)
	newcomer := fmt.Sprintf("@newcomer:%s", a.Config.ServerName)
	for _, p := range []rooms.Proto{
		{Type: "m.room.member", StateKey: ptr(string(leaver)), Sender: leaver, Content: json.RawMessage(`{"membership":"` + leave + `"}`)},
		{Type: "m.room.member", StateKey: &kick, Sender: alice.UserID, Content: json.RawMessage(`{"membership":"leave","reason":"test"}`)},
		{Type: "m.room.member", StateKey: &newcomer, Sender: id.UserID(newcomer), Content: json.RawMessage(`{"membership":"join"}`)},
	} {
		ev, err := a.Rooms.Send(ctx, roomID, p)
		if err != nil {
			t.Fatalf("membership change on A: %v", err)
		}
		testnode.WaitFor(t, 20*time.Second, "B gets "+string(ev.ID), func() bool {
			got, err := b.Rooms.Event(ctx, ev.ID)
			return err == nil && got != nil
		})
	}
	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the resync finished while its fetch was held")
	}
	// B cannot answer another server's join while partial (MSC3706).
	_, err = a.Federation.Client.MakeJoin(ctx, &federation.ReqMakeJoin{RoomID: roomID, UserID: alice.UserID, Via: b.Config.ServerName})
	if code, status := testnode.ErrCode(err); status != 404 || code != "M_NOT_FOUND" {
		t.Fatalf("make_join on B while partial: %v, want 404 M_NOT_FOUND", err)
	}

	// B refuses another server's /state_ids and /state while partial.
	_, err = a.Federation.Client.GetStateIDs(ctx, b.Config.ServerName, roomID, sent)
	if code, status := testnode.ErrCode(err); status != 403 || code != "M_FORBIDDEN" {
		t.Fatalf("/state_ids on B while partial: %v, want 403 M_FORBIDDEN", err)
	}
	_, err = a.Federation.Client.GetState(ctx, b.Config.ServerName, roomID, sent)
	if code, status := testnode.ErrCode(err); status != 403 || code != "M_FORBIDDEN" {
		t.Fatalf("/state on B while partial: %v, want 403 M_FORBIDDEN", err)
	}
	// bob's /state waits for the full state.
	fullState := make(chan int, 1)
	go func() {
		evs, err := bob.State(ctx, roomID)
		if err != nil {
			fullState <- -1
			return
		}
		fullState <- len(evs[event.StateMember])
	}()

	// /joined_members waits for the full state.
	joined := make(chan int, 1)
	go func() {
		resp, err := bob.JoinedMembers(ctx, roomID)
		if err != nil {
			joined <- -1
			return
		}
		joined <- len(resp.Joined)
	}()
	select {
	case n := <-joined:
		t.Fatalf("/joined_members answered %d before the state was complete", n)
	case n := <-fullState:
		t.Fatalf("/state answered %d member events before the state was complete", n)
	case <-time.After(200 * time.Millisecond):
	}
	close(g.open)
	// alice, bob, 300 members, the newcomer, less the two who left.
	if n, want := <-joined, 300+3-2; n != want {
		t.Fatalf("/joined_members after the resync: %d members, want %d", n, want)
	}
	// The same and the two who left.
	if n, want := <-fullState, 300+3; n != want {
		t.Fatalf("/state after the resync: %d member events, want %d", n, want)
	}
	waitSameState(t, a, b, roomID)
	bm := b.Rooms.Members(ctx, roomID)
	if bm[leaver] != "leave" || bm[kicked] != "leave" || bm[id.UserID(newcomer)] != "join" || bm[members[0]] != "join" {
		t.Fatalf("B's memberships after the resync: leaver %q, kicked %q, newcomer %q, member0 %q",
			bm[leaver], bm[kicked], bm[id.UserID(newcomer)], bm[members[0]])
	}
}

// TestPartialStateResyncResumesAfterRestart: node B restarted while its
// state of a room is partial fetches the full state once it runs again.
func TestPartialStateResyncResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	bigRoom(t, a, roomID, 50)
	g := gate(b)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	<-g.asked
	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the room is not partial on B")
	}
	b = b.Restart()
	waitSameState(t, a, b, roomID)
}

// TestPartialStateOutboundDestinations: node C's carol is in A's room
// before bob of B joins it; while B's state is partial (it knows no member
// of C), bob's message still goes to C, a server send_join named; after
// the resync it goes to C as a member's server.
func TestPartialStateOutboundDestinations(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob, carol := a.Register("alice"), b.Register("bob"), c.Register("carol")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "named"})
	bigRoom(t, a, roomID, 20)
	if _, err := carol.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("carol joins: %v", err)
	}
	waitSameState(t, a, c, roomID)
	g := gate(b)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	<-g.asked
	if b.Rooms.Membership(carol.UserID, roomID) != "" {
		t.Fatal("B knows carol's membership: the room is not partial")
	}
	// C takes B's events once A has passed it bob's join.
	testnode.WaitFor(t, 20*time.Second, "C knows bob's join", func() bool {
		return c.Rooms.Membership(bob.UserID, roomID) == "join"
	})
	during := testnode.SendText(t, bob, roomID, "during the resync")
	testnode.WaitFor(t, 20*time.Second, "C gets bob's message sent during the resync", func() bool {
		ev, err := c.Rooms.Event(ctx, during)
		return err == nil && ev != nil
	})
	close(g.open)
	waitSameState(t, a, b, roomID)
	if b.Rooms.Membership(carol.UserID, roomID) != "join" {
		t.Fatal("B does not know carol's join after the resync")
	}
	after := testnode.SendText(t, bob, roomID, "after the resync")
	testnode.WaitFor(t, 20*time.Second, "C gets bob's message sent after the resync", func() bool {
		ev, err := c.Rooms.Event(ctx, after)
		return err == nil && ev != nil
	})
}

// TestPartialStateSync: while B's state of a room is partial, bob's /sync
// without lazy-loaded members leaves the room out and one with them
// shows it, with the typing of a member B does not know yet; the resync asks /state_ids at the join's prev event (what a
// resident surely knows, and what Complement's residents answer); a
// long-polling eager /sync is woken when the state becomes complete and
// shows the room as newly joined, with its members.
func TestPartialStateSync(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	// Encrypted: the members the full state brings then count as users who
	// now share an encrypted room with bob (device lists below).
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
		Type: event.StateEncryption, Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}}})
	members := bigRoom(t, a, roomID, 30)
	carl := a.Register("carl")
	if _, err := carl.JoinRoom(ctx, string(roomID), nil); err != nil {
		t.Fatalf("carl joins: %v", err)
	}
	g := gate(b)

	first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("bob's first sync: %v", err)
	}
	resp, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}})
	if err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	<-g.asked
	if resp.RoomID != roomID {
		t.Fatalf("bob joined %s, want %s", resp.RoomID, roomID)
	}
	if !b.Rooms.HasPartialState(ctx, roomID) {
		t.Fatal("the room is not partial on B")
	}
	joinEv := memberEvent(t, b, roomID, bob.UserID)
	g.mu.Lock()
	askedAt := slices.Clone(g.askedAt)
	g.mu.Unlock()
	if len(joinEv.PDU.PrevEvents) != 1 || len(askedAt) == 0 || askedAt[0] != joinEv.PDU.PrevEvents[0] {
		t.Fatalf("the resync asked /state_ids at %v, want the join's prev event %v", askedAt, joinEv.PDU.PrevEvents)
	}

	eager, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("bob's eager sync: %v", err)
	}
	if _, ok := eager.Rooms.Join[roomID]; ok {
		t.Fatal("an eager initial sync shows the partial-state room")
	}
	incremental, err := bob.SyncRequest(ctx, 0, first.NextBatch, "", false, "")
	if err != nil {
		t.Fatalf("bob's eager incremental sync: %v", err)
	}
	if _, ok := incremental.Rooms.Join[roomID]; ok {
		t.Fatal("an eager incremental sync shows the partial-state room")
	}
	lazyFilter := `{"room":{"state":{"lazy_load_members":true},"timeline":{"lazy_load_members":true}}}`
	lazy, err := bob.SyncRequest(ctx, 0, "", lazyFilter, false, "")
	if err != nil {
		t.Fatalf("bob's lazy sync: %v", err)
	}
	if _, ok := lazy.Rooms.Join[roomID]; !ok {
		t.Fatal("a lazy-loading sync lacks the partial-state room")
	}

	// carl, a member B does not know yet, types: B takes it from A.
	if b.Rooms.Membership(carl.UserID, roomID) != "" {
		t.Fatal("B knows carl's membership: the test needs a member the partial state lacks")
	}
	if _, err := carl.UserTyping(ctx, roomID, true, 30*time.Second); err != nil {
		t.Fatalf("carl types: %v", err)
	}
	since := lazy.NextBatch
	testnode.WaitFor(t, 20*time.Second, "bob sees carl typing while the state is partial", func() bool {
		r, err := bob.SyncRequest(ctx, 1000, since, lazyFilter, false, "")
		if err != nil {
			t.Fatalf("bob's lazy sync: %v", err)
		}
		since = r.NextBatch
		jr := r.Rooms.Join[roomID]
		if jr == nil {
			return false
		}
		for _, ev := range jr.Ephemeral.Events {
			if ev.Type == event.EphemeralEventTyping && strings.Contains(string(ev.Content.VeryRaw), string(carl.UserID)) {
				return true
			}
		}
		return false
	})

	// carl's message shows with his member event, which B takes from the
	// message's auth events, in a lazy-loading initial sync.
	carlSaid := testnode.SendText(t, carl, roomID, "carl while B is partial")
	testnode.WaitFor(t, 20*time.Second, "B gets carl's message", func() bool {
		ev, err := b.Rooms.Event(ctx, carlSaid)
		return err == nil && ev != nil
	})
	withCarl, err := bob.SyncRequest(ctx, 0, "", lazyFilter, false, "")
	if err != nil {
		t.Fatalf("bob's lazy sync: %v", err)
	}
	if jr := withCarl.Rooms.Join[roomID]; jr == nil || !slices.ContainsFunc(jr.State.Events, func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == string(carl.UserID)
	}) {
		t.Fatal("a lazy-loading sync while partial lacks the member event of carl, who sent a message of its timeline")
	}
	// So does an incremental one: the state bob's client has lacks carl.
	hasCarl := func(r *mautrix.RespSync) bool {
		jr := r.Rooms.Join[roomID]
		return jr != nil && slices.ContainsFunc(jr.State.Events, func(ev *event.Event) bool {
			return ev.Type == event.StateMember && ev.GetStateKey() == string(carl.UserID)
		})
	}
	inc, err := bob.SyncRequest(ctx, 0, since, lazyFilter, false, "")
	if err != nil {
		t.Fatalf("bob's incremental lazy sync: %v", err)
	}
	if !hasCarl(inc) {
		t.Fatal("an incremental lazy-loading sync while partial lacks the member event of carl, who sent a message of its timeline")
	}

	// Long-poll (each answer without the room is another change, such as
	// bob's device list) until the room shows.
	woken := make(chan *mautrix.RespSync, 1)
	go func() {
		defer close(woken)
		since := eager.NextBatch
		for range 20 {
			r, err := bob.SyncRequest(ctx, 20000, since, "", false, "")
			if err != nil {
				t.Errorf("bob's long-polling sync: %v", err)
				return
			}
			if _, ok := r.Rooms.Join[roomID]; ok {
				woken <- r
				return
			}
			since = r.NextBatch
		}
	}()
	select {
	case r := <-woken:
		raw, _ := json.Marshal(r)
		t.Fatalf("the long-polling sync showed the room before the resync: %s", raw)
	case <-time.After(500 * time.Millisecond):
	}
	unknown := members[len(members)-1]
	if b.Rooms.Membership(unknown, roomID) != "" {
		t.Fatalf("B knows %s's membership before the resync: the test needs a member the partial state lacks", unknown)
	}
	start := time.Now()
	close(g.open)
	r := <-woken
	if r == nil {
		t.Fatal("no long-polling sync showed the room")
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("the long-polling sync answered %v after the resync began: not woken by its completion", waited)
	}
	jr, ok := r.Rooms.Join[roomID]
	if !ok {
		t.Fatal("the sync woken by the resync lacks the room")
	}
	sawMember := false
	for _, ev := range slices.Concat(jr.State.Events, jr.Timeline.Events) {
		if ev.Type == event.StateMember && ev.GetStateKey() == string(members[3]) {
			sawMember = true
		}
	}
	if !sawMember {
		t.Fatalf("the room newly shown after the resync lacks member %s's event", members[3])
	}

	// The members learned from the full state now share an encrypted room
	// with bob: a lazy-loading sync from before the resync names them as
	// device list changes, so that bob's client fetches their keys.
	after, err := bob.SyncRequest(ctx, 0, lazy.NextBatch, lazyFilter, false, "")
	if err != nil {
		t.Fatalf("bob's lazy sync after the resync: %v", err)
	}
	if !slices.Contains(after.DeviceLists.Changed, unknown) {
		t.Fatalf("device_lists.changed after the resync %v lacks %s, learned from the full state", after.DeviceLists.Changed, unknown)
	}
	// carl's member event, which the client was never given while the
	// state was partial, comes with his message in a sync spanning the
	// resync, though the state B now holds for the token had it.
	lastOnly := `{"room":{"state":{"lazy_load_members":true},"timeline":{"lazy_load_members":true,"limit":1}}}`
	span, err := bob.SyncRequest(ctx, 0, since, lastOnly, false, "")
	if err != nil {
		t.Fatalf("bob's lazy sync spanning the resync: %v", err)
	}
	if jr := span.Rooms.Join[roomID]; jr == nil || len(jr.Timeline.Events) == 0 || jr.Timeline.Events[len(jr.Timeline.Events)-1].Sender != carl.UserID {
		t.Fatalf("the lazy sync spanning the resync does not end with carl's message: %+v", jr)
	}
	if !hasCarl(span) {
		t.Fatal("a lazy-loading sync spanning the resync lacks the member event of carl, who sent its timeline's message")
	}
}

// memberEvent returns user's join event of the room on n.
func memberEvent(t *testing.T, n *testnode.Node, roomID id.RoomID, user id.UserID) *rooms.Event {
	t.Helper()
	for _, ev := range mustState(t, n, roomID) {
		if ev.Type == "m.room.member" && *ev.StateKey == string(user) {
			return ev
		}
	}
	t.Fatalf("no member event of %s on %s", user, n.Config.ServerName)
	return nil
}

func mustState(t *testing.T, n *testnode.Node, roomID id.RoomID) []*rooms.Event {
	t.Helper()
	evs, err := n.Rooms.CurrentState(context.Background(), roomID)
	if err != nil {
		t.Fatalf("current state on %s: %v", n.Config.ServerName, err)
	}
	return evs
}

func ptr[T any](v T) *T { return &v }

// serversInRoomOnly rewrites the servers_in_room of the send_join answers
// its node gets to one server, as a resident that names too few does.
type serversInRoomOnly struct {
	http.RoundTripper
	server string
}

func (s serversInRoomOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.RoundTripper.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/v2/send_join/") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var answer map[string]json.RawMessage
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, err
	}
	answer["servers_in_room"], _ = json.Marshal([]string{s.server})
	if raw, err = json.Marshal(answer); err != nil {
		return nil, err
	}
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(raw)), int64(len(raw))
	resp.Header.Set("Content-Length", strconv.Itoa(len(raw)))
	return resp, nil
}

// TestPartialStateMissedDeviceListUpdate follows Complement's "Device list
// updates reach incorrectly absent servers once partial state join
// completes": carol of C is in A's room before bob of B joins it, and A's
// send_join answer names only A. While B's state is partial, bob renames
// his device: the update goes to A only, B knowing nothing of C. Once the
// full state shows carol was in the room, C is sent the update it missed,
// also when B restarts before the resync completes (which servers the
// update went to is kept in B's database).
func TestPartialStateMissedDeviceListUpdate(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) { missedDeviceListUpdate(t, restart) })
	}
}

func missedDeviceListUpdate(t *testing.T, restart bool) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob, carol := a.Register("alice"), b.Register("bob"), c.Register("carol")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "named"})
	if _, err := carol.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("carol joins: %v", err)
	}
	waitSameState(t, a, c, roomID)
	updates := make(chan string, 16)
	c.Federation.HandleEDU("m.device_list_update", func(_ context.Context, origin string, content json.RawMessage) error {
		var u struct {
			UserID            id.UserID `json:"user_id"`
			DeviceDisplayName string    `json:"device_display_name"`
		}
		if err := json.Unmarshal(content, &u); err == nil && u.UserID == bob.UserID {
			updates <- u.DeviceDisplayName
		}
		return nil
	})
	hc := *b.Federation.Client.HTTP
	hc.Transport = serversInRoomOnly{RoundTripper: hc.Transport, server: a.Config.ServerName}
	b.Federation.Client.HTTP = &hc
	g := gate(b)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	<-g.asked
	if err := bob.SetDeviceInfo(ctx, bob.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "renamed while partial"}); err != nil {
		t.Fatalf("bob renames his device: %v", err)
	}
	if restart {
		if !b.Rooms.HasPartialState(ctx, roomID) {
			t.Fatal("the room's state became complete on B before the restart")
		}
		b = b.Restart() // its resync resumes, not held
	} else {
		select {
		case name := <-updates:
			t.Fatalf("C got bob's update %q while B's partial state knew nothing of C", name)
		case <-time.After(time.Second):
		}
		close(g.open)
	}
	waitSameState(t, a, b, roomID)
	select {
	case name := <-updates:
		if name != "renamed while partial" {
			t.Fatalf("C got bob's update naming %q, want the rename it missed", name)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("C never got the device-list update it missed while B's state was partial")
	}
}
