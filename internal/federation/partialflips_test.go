package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// forgeAs signs, as n's server, an event of one of its users with the
// prev_events and auth_events given (what a server that knows other
// members sends), without storing it anywhere, and returns its ID and
// JSON.
func forgeAs(t *testing.T, n *testnode.Node, roomID id.RoomID, sender id.UserID, typ string, stateKey *string, content any, prevs, auth []id.EventID, depth int64) (id.EventID, json.RawMessage) {
	t.Helper()
	ctx := context.Background()
	v, err := n.Rooms.Version(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(content)
	tmpl := map[string]any{
		"room_id": roomID, "sender": sender, "type": typ, "content": json.RawMessage(c),
		"prev_events": prevs, "auth_events": auth, "depth": depth, "origin_server_ts": 0,
	}
	if stateKey != nil {
		tmpl["state_key"] = *stateKey
	}
	raw, _ := json.Marshal(tmpl)
	evID, signed, err := n.Rooms.SignTemplate(v, raw)
	if err != nil {
		t.Fatalf("sign %s: %v", typ, err)
	}
	return evID, signed
}

// TestPartialStateFlipsReachIndexes: what the re-check after a
// partial-state resync changes reaches every index, not only the events
// table. fred (who may ban) and derek join A's room, fred leaves; bob of B
// joins with partial state, which lacks their member events. While the
// state is partial, B gets fred's ban of derek (accepted by fred's old
// join), derek's message after it (rejected: derek is banned as far as B
// knows) and fred's message after that (accepted, counted for bob,
// indexed). Once the full state shows fred left, the ban and fred's
// message are rejected and derek's message allowed: bob's unread count
// and /notifications hold derek's message and not fred's, search finds
// derek's and not fred's, a long-poll waiting meanwhile is woken with
// derek's message, and bob's next event names no rejected event as a
// prev_event.
// B runs on each engine, whose search indexes differ.
func TestPartialStateFlipsReachIndexes(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testFlipsReachIndexes(t, engine) })
	}
}

func testFlipsReachIndexes(t *testing.T, engine testnode.Engine) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, engine, ca)
	alice, fred, derek := a.Register("alice"), a.Register("fred"), a.Register("derek")
	bob := b.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{
		Preset: "public_chat", Name: "flips",
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{fred.UserID: 100}},
	})
	for _, c := range []*mautrix.Client{fred, derek} {
		if _, err := c.JoinRoom(ctx, string(roomID), nil); err != nil {
			t.Fatalf("%s joins: %v", c.UserID, err)
		}
	}
	fredJoin, derekJoin := memberEvent(t, a, roomID, fred.UserID), memberEvent(t, a, roomID, derek.UserID)
	if _, err := fred.LeaveRoom(ctx, roomID); err != nil {
		t.Fatalf("fred leaves: %v", err)
	}
	// The auth events the forged events name: the power levels and the
	// members, and the create event where the room version lists it (not
	// in version 12, whose room ID names it).
	var pl id.EventID
	var authBase []id.EventID
	for _, ev := range mustState(t, a, roomID) {
		switch ev.Type {
		case "m.room.create":
			if v, _ := a.Rooms.Version(ctx, roomID); v != id.RoomV12 {
				authBase = append(authBase, ev.ID)
			}
		case "m.room.power_levels":
			pl = ev.ID
		}
	}
	authWith := func(ids ...id.EventID) []id.EventID { return slices.Concat(authBase, []id.EventID{pl}, ids) }
	g := gate(b)
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	select {
	case <-g.asked:
	case <-time.After(30 * time.Second):
		t.Fatal("B never asked for the full state")
	}
	if b.Rooms.Membership(fred.UserID, roomID) != "" || b.Rooms.Membership(derek.UserID, roomID) != "" {
		t.Fatal("B's partial state holds fred's or derek's member events: the test needs them omitted")
	}
	bobJoin := memberEvent(t, b, roomID, bob.UserID)

	aName := a.Config.ServerName
	ban, banRaw := forgeAs(t, a, roomID, fred.UserID, "m.room.member", ptr(string(derek.UserID)), map[string]string{"membership": "ban"},
		[]id.EventID{bobJoin.ID}, authWith(fredJoin.ID, derekJoin.ID), bobJoin.Depth+1)
	if _, err := b.Rooms.ReceivePDU(ctx, aName, banRaw); err != nil {
		t.Fatalf("B refuses fred's ban while its state is partial: %v", err)
	}
	// derek's message mentions bob (a highlight), fred's does not.
	derekMsg, derekRaw := forgeAs(t, a, roomID, derek.UserID, "m.room.message", nil,
		map[string]any{"msgtype": "m.text", "body": "derekword for bob", "m.mentions": map[string]any{"user_ids": []id.UserID{bob.UserID}}},
		[]id.EventID{ban}, authWith(derekJoin.ID), bobJoin.Depth+2)
	if _, err := b.Rooms.ReceivePDU(ctx, aName, derekRaw); !errorsIsRejected(err) {
		t.Fatalf("derek's message while B believes him banned: %v, want rejected", err)
	}
	fredMsg, fredRaw := forgeAs(t, a, roomID, fred.UserID, "m.room.message", nil, map[string]string{"msgtype": "m.text", "body": "fredword"},
		[]id.EventID{derekMsg}, authWith(fredJoin.ID), bobJoin.Depth+3)
	if _, err := b.Rooms.ReceivePDU(ctx, aName, fredRaw); err != nil {
		t.Fatalf("B refuses fred's message while its state is partial: %v", err)
	}

	lazyFilter := `{"room":{"state":{"lazy_load_members":true},"timeline":{"lazy_load_members":true}}}`
	before, err := bob.SyncRequest(ctx, 0, "", lazyFilter, false, "")
	if err != nil {
		t.Fatalf("bob's sync while partial: %v", err)
	}
	if n := before.Rooms.Join[roomID].UnreadNotifications; n == nil || n.NotificationCount != 1 || n.HighlightCount != 0 {
		t.Fatalf("bob's unread notifications while partial = %+v, want fred's message, no highlight", n)
	}
	if got := searchIDs(t, bob, "fredword"); !slices.Equal(got, []id.EventID{fredMsg}) {
		t.Fatalf("search for fred's message while partial = %v, want %s", got, fredMsg)
	}
	// A long-poll waiting while the resync completes.
	woken := make(chan *mautrix.RespSync, 1)
	go func() {
		r, err := bob.SyncRequest(ctx, 30000, before.NextBatch, lazyFilter, false, "")
		if err != nil {
			t.Errorf("bob's long-poll: %v", err)
		}
		woken <- r
	}()
	time.Sleep(100 * time.Millisecond) // let the long-poll park

	close(g.open)
	testnode.WaitFor(t, 30*time.Second, "B's state becomes complete", func() bool { return !b.Rooms.HasPartialState(ctx, roomID) })

	var polled *mautrix.RespSync
	select {
	case polled = <-woken:
	case <-time.After(30 * time.Second):
		t.Fatal("bob's long-poll was not woken by the resync")
	}
	if polled == nil || !slices.ContainsFunc(polled.Rooms.Join[roomID].Timeline.Events, func(ev *event.Event) bool { return ev.ID == derekMsg }) {
		t.Errorf("bob's long-poll woken by the resync lacks derek's message %s", derekMsg)
	}
	after, err := bob.SyncRequest(ctx, 0, "", lazyFilter, false, "")
	if err != nil {
		t.Fatalf("bob's sync after the resync: %v", err)
	}
	if n := after.Rooms.Join[roomID].UnreadNotifications; n == nil || n.NotificationCount != 1 || n.HighlightCount != 1 {
		t.Errorf("bob's unread notifications after the resync = %+v, want derek's message alone, a highlight", n)
	}
	notified := notificationIDs(t, bob)
	if !slices.Equal(notified, []id.EventID{derekMsg}) {
		t.Errorf("bob's /notifications after the resync = %v, want derek's message %s alone (not fred's %s)", notified, derekMsg, fredMsg)
	}
	if got := searchIDs(t, bob, "fredword"); len(got) != 0 {
		t.Errorf("search finds fred's rejected message after the resync: %v", got)
	}
	if got := searchIDs(t, bob, "derekword"); !slices.Equal(got, []id.EventID{derekMsg}) {
		t.Errorf("search for derek's allowed message after the resync = %v, want %s", got, derekMsg)
	}

	sent := testnode.SendText(t, bob, roomID, "after the resync")
	ev, err := b.Rooms.Event(ctx, sent)
	if err != nil {
		t.Fatalf("bob's message: %v", err)
	}
	if prevs := ev.PDU.PrevEvents; slices.Contains(prevs, fredMsg) || slices.Contains(prevs, ban) || !slices.Contains(prevs, derekMsg) {
		t.Errorf("bob's message after the resync has prev_events %v: want derek's allowed message %s, no rejected event (fred's message %s, the ban %s)",
			prevs, derekMsg, fredMsg, ban)
	}
}

func errorsIsRejected(err error) bool { return errors.Is(err, rooms.ErrRejected) }

// searchIDs is what bob's /search for term finds, in order.
func searchIDs(t *testing.T, c *mautrix.Client, term string) []id.EventID {
	t.Helper()
	body := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": term}}}
	res := testnode.Call(t, c, "POST", "/_matrix/client/v3/search", body).OK(t)
	var out []id.EventID
	cats, _ := res["search_categories"].(map[string]any)
	re, _ := cats["room_events"].(map[string]any)
	results, _ := re["results"].([]any)
	for _, r := range results {
		ev, _ := r.(map[string]any)["result"].(map[string]any)
		if s, ok := ev["event_id"].(string); ok {
			out = append(out, id.EventID(s))
		}
	}
	return out
}

// notificationIDs is what c's /notifications lists, newest first.
func notificationIDs(t *testing.T, c *mautrix.Client) []id.EventID {
	t.Helper()
	res := testnode.Call(t, c, "GET", "/_matrix/client/v3/notifications", nil).OK(t)
	var out []id.EventID
	list, _ := res["notifications"].([]any)
	for _, n := range list {
		ev, _ := n.(map[string]any)["event"].(map[string]any)
		if s, ok := ev["event_id"].(string); ok {
			out = append(out, id.EventID(s))
		}
	}
	return out
}
