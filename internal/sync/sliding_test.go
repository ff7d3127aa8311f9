package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/sync"
	"github.com/matrixos/matrixos/internal/testnode"
)

// elementXRequiredState is the required_state of Element X's room list
// (matrix-rust-sdk's room list service).
var elementXRequiredState = [][]string{
	{"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
	{"m.room.name", ""}, {"m.room.avatar", ""}, {"m.room.canonical_alias", ""}, {"m.room.topic", ""},
	{"m.room.join_rules", ""}, {"m.room.power_levels", ""}, {"m.room.create", ""}, {"m.room.tombstone", ""},
	{"m.room.history_visibility", ""}, {"m.room.pinned_events", ""}, {"m.call.member", "*"},
}

// roomListRequest is Element X's room-list connection: one list of all
// rooms, ranges [[0, last]], the newest event of each.
func roomListRequest(last int) map[string]any {
	return map[string]any{
		"lists": map[string]any{"all_rooms": map[string]any{
			"ranges": [][]int{{0, last}}, "timeline_limit": 1, "required_state": elementXRequiredState,
		}},
	}
}

// subscriptionRequest subscribes to rooms as Element X does when one is
// opened: timeline_limit 20, lazy-loaded members.
func subscriptionRequest(rooms ...id.RoomID) map[string]any {
	subs := map[id.RoomID]any{}
	for _, r := range rooms {
		subs[r] = map[string]any{"timeline_limit": 20, "required_state": elementXRequiredState}
	}
	return map[string]any{"room_subscriptions": subs}
}

// encryptionRequest is Element X's encryption connection: no lists, the
// e2ee and to_device extensions.
func encryptionRequest(toDeviceSince string) map[string]any {
	td := map[string]any{"enabled": true}
	if toDeviceSince != "" {
		td["since"] = toDeviceSince
	}
	return map[string]any{"extensions": map[string]any{"e2ee": map[string]any{"enabled": true}, "to_device": td}}
}

type slidingResponse struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms      map[id.RoomID]*slidingRoom `json:"rooms"`
	Extensions struct {
		ToDevice *struct {
			NextBatch string         `json:"next_batch"`
			Events    []*event.Event `json:"events"`
		} `json:"to_device"`
		E2EE *struct {
			DeviceLists *struct {
				Changed []id.UserID `json:"changed"`
				Left    []id.UserID `json:"left"`
			} `json:"device_lists"`
			OTKCounts     map[string]int `json:"device_one_time_keys_count"`
			FallbackTypes []string       `json:"device_unused_fallback_key_types"`
		} `json:"e2ee"`
		AccountData *struct {
			Global []*event.Event               `json:"global"`
			Rooms  map[id.RoomID][]*event.Event `json:"rooms"`
		} `json:"account_data"`
		Receipts *struct {
			Rooms map[id.RoomID]*event.Event `json:"rooms"`
		} `json:"receipts"`
		Typing *struct {
			Rooms map[id.RoomID]*event.Event `json:"rooms"`
		} `json:"typing"`
	} `json:"extensions"`
}

type slidingRoom struct {
	Name          string         `json:"name"`
	Avatar        string         `json:"avatar"`
	Initial       bool           `json:"initial"`
	Expanded      bool           `json:"unstable_expanded_timeline"`
	IsDM          *bool          `json:"is_dm"`
	RequiredState []*event.Event `json:"required_state"`
	Timeline      []*event.Event `json:"timeline"`
	PrevBatch     string         `json:"prev_batch"`
	Limited       bool           `json:"limited"`
	NumLive       *int           `json:"num_live"`
	JoinedCount   *int           `json:"joined_count"`
	InvitedCount  *int           `json:"invited_count"`
	Notifications *int           `json:"notification_count"`
	Highlights    *int           `json:"highlight_count"`
	BumpStamp     int64          `json:"bump_stamp"`
	Membership    string         `json:"membership"`
	Lists         []string       `json:"lists"`
	InviteState   []*event.Event `json:"invite_state"`
	KnockState    []*event.Event `json:"knock_state"`
	Heroes        []struct {
		UserID      id.UserID `json:"user_id"`
		Displayname string    `json:"displayname"`
	} `json:"heroes"`
}

// stateKeys lists the required_state of a room as "type|state_key".
func (r *slidingRoom) stateKeys() []string {
	var out []string
	for _, ev := range r.RequiredState {
		out = append(out, ev.Type.Type+"|"+ev.GetStateKey())
	}
	slices.Sort(out)
	return out
}

// timelineIDs lists the event IDs of a room's timeline.
func (r *slidingRoom) timelineIDs() []id.EventID {
	var out []id.EventID
	for _, ev := range r.Timeline {
		out = append(out, ev.ID)
	}
	return out
}

// slidingConn is a client's sliding sync connection: it sends each request
// with its conn_id and the pos of the last response.
type slidingConn struct {
	c      *mautrix.Client
	connID string
	pos    string
}

func newConn(c *mautrix.Client, connID string) *slidingConn {
	return &slidingConn{c: c, connID: connID}
}

// request sends body on the connection with timeout ms (in the query, as
// matrix-rust-sdk sends it) and returns the raw answer.
func (sc *slidingConn) request(t *testing.T, body map[string]any, timeoutMS int) *testnode.Response {
	t.Helper()
	b := maps.Clone(body)
	if b == nil {
		b = map[string]any{}
	}
	if sc.connID != "" {
		b["conn_id"] = sc.connID
	}
	q := fmt.Sprintf("?timeout=%d", timeoutMS)
	if sc.pos != "" {
		q += "&pos=" + sc.pos
	}
	return testnode.Call(t, sc.c, "POST", sync.SlidingPath+q, b)
}

// sync sends body and decodes the answer, which must be a 200; the
// connection moves to its pos.
func (sc *slidingConn) sync(t *testing.T, body map[string]any, timeoutMS int) *slidingResponse {
	t.Helper()
	r := sc.request(t, body, timeoutMS)
	if r.Status != 200 {
		t.Fatalf("sliding sync: HTTP %d: %s", r.Status, r.Body)
	}
	resp := testnode.Decode[*slidingResponse](t, r.Body)
	if resp.Pos == "" {
		t.Fatalf("sliding sync: no pos in %s", r.Body)
	}
	sc.pos = resp.Pos
	return resp
}

func sendText(t *testing.T, c *mautrix.Client, room id.RoomID, body string) id.EventID {
	t.Helper()
	return testnode.SendText(t, c, room, body)
}

// TestSlidingSyncRoomList drives Element X's room-list connection: every
// room once with its newest event, the state it asks for (the senders'
// members lazily, the user's own), names, heroes and counts, rooms in
// bump_stamp order; then only what changed, a removed name as null.
func TestSlidingSyncRoomList(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		named := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Named", Topic: "a topic"})
		testnode.Join(t, bob, named)
		testnode.Join(t, carol, named)
		unnamed := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		testnode.Join(t, bob, unnamed)
		sendText(t, alice, unnamed, "older")
		last := sendText(t, bob, named, "newest")

		conn := newConn(alice, "room-list")
		resp := conn.sync(t, roomListRequest(19), 0)
		if got := resp.Lists["all_rooms"].Count; got != 2 {
			t.Fatalf("all_rooms count = %d, want 2", got)
		}
		nr, ur := resp.Rooms[named], resp.Rooms[unnamed]
		if nr == nil || ur == nil {
			t.Fatalf("rooms = %v, want both", slices.Collect(maps.Keys(resp.Rooms)))
		}
		if !nr.Initial || nr.Membership != "join" || !slices.Equal(nr.Lists, []string{"all_rooms"}) {
			t.Fatalf("named room: initial %v membership %q lists %v", nr.Initial, nr.Membership, nr.Lists)
		}
		if nr.BumpStamp <= ur.BumpStamp {
			t.Fatalf("bump_stamp of the room with the newest message %d <= %d", nr.BumpStamp, ur.BumpStamp)
		}
		if ids := nr.timelineIDs(); !slices.Equal(ids, []id.EventID{last}) || !nr.Limited || nr.PrevBatch == "" {
			t.Fatalf("named timeline %v limited %v prev_batch %q, want only %s, limited", ids, nr.Limited, nr.PrevBatch, last)
		}
		if nr.Name != "Named" || nr.JoinedCount == nil || *nr.JoinedCount != 3 || nr.InvitedCount == nil || *nr.InvitedCount != 0 {
			t.Fatalf("named room: name %q joined %v invited %v", nr.Name, nr.JoinedCount, nr.InvitedCount)
		}
		if nr.Heroes != nil {
			t.Fatalf("a named room has heroes: %v", nr.Heroes)
		}
		// Lazy members: the sender of the timeline (bob) and $ME (alice),
		// not carol, who sent nothing shown.
		want := []string{
			"m.room.create|", "m.room.history_visibility|", "m.room.join_rules|",
			"m.room.member|" + string(alice.UserID), "m.room.member|" + string(bob.UserID),
			"m.room.name|", "m.room.power_levels|", "m.room.topic|",
		}
		if got := nr.stateKeys(); !slices.Equal(got, want) {
			t.Fatalf("named required_state = %v, want %v", got, want)
		}
		if len(ur.Heroes) != 1 || ur.Heroes[0].UserID != bob.UserID || ur.Name != "" {
			t.Fatalf("unnamed room: name %q heroes %v, want bob", ur.Name, ur.Heroes)
		}

		// Nothing new: no rooms.
		resp = conn.sync(t, roomListRequest(19), 0)
		if len(resp.Rooms) != 0 {
			t.Fatalf("incremental without news has rooms %v", testnode.Decode[map[string]any](t, []byte(mustJSON(resp.Rooms))))
		}
		// carol joins and writes: that room only, the new event, live.
		testnode.Join(t, carol, unnamed)
		newer := sendText(t, carol, unnamed, "from carol")
		resp = conn.sync(t, roomListRequest(19), 0)
		ur = resp.Rooms[unnamed]
		if len(resp.Rooms) != 1 || ur == nil {
			t.Fatalf("rooms %v, want the unnamed room only", slices.Collect(maps.Keys(resp.Rooms)))
		}
		if ur.Initial || !slices.Equal(ur.timelineIDs(), []id.EventID{newer}) || ur.NumLive == nil || *ur.NumLive != 1 {
			t.Fatalf("unnamed room: initial %v timeline %v num_live %v", ur.Initial, ur.timelineIDs(), ur.NumLive)
		}
		// carol's join and her message: her member event, once.
		if got := ur.stateKeys(); !slices.Contains(got, "m.room.member|"+string(carol.UserID)) {
			t.Fatalf("required_state %v lacks carol's member event", got)
		}
		if ur.BumpStamp <= nr.BumpStamp {
			t.Fatalf("the room with the newest message has bump_stamp %d <= %d", ur.BumpStamp, nr.BumpStamp)
		}
		// A name removed is null, for clients to forget it.
		testnode.SendState(t, alice, named, event.StateRoomName, "", map[string]any{})
		raw := conn.request(t, roomListRequest(19), 0)
		var body struct {
			Rooms map[id.RoomID]map[string]json.RawMessage `json:"rooms"`
		}
		if err := json.Unmarshal(raw.Body, &body); err != nil {
			t.Fatal(err)
		}
		if got := string(body.Rooms[named]["name"]); got != "null" {
			t.Fatalf("name after its removal = %q, want null (rooms %s)", got, raw.Body)
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSlidingSyncRoomSubscription: a subscribed room (Element X opening
// one) gets its newest 20 events, limited, with a prev_batch that
// /messages continues from, and the members of the senders; subscriptions
// hold for the connection until unsubscribed.
func TestSlidingSyncRoomSubscription(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.PublicRoom(t, alice, bob)
	var sent []id.EventID
	for i := range 30 {
		sender := alice
		if i%2 == 1 {
			sender = bob
		}
		sent = append(sent, sendText(t, sender, room, fmt.Sprintf("message %d", i)))
	}
	other := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	conn := newConn(alice, "")
	resp := conn.sync(t, subscriptionRequest(room, "!unknown:localhost"), 0)
	r := resp.Rooms[room]
	if len(resp.Rooms) != 1 || r == nil {
		t.Fatalf("rooms = %v, want the subscribed room only (not %s, not the unknown one)", slices.Collect(maps.Keys(resp.Rooms)), other)
	}
	if !slices.Equal(r.timelineIDs(), sent[10:]) || !r.Limited {
		t.Fatalf("timeline %v limited %v, want the newest 20, limited", r.timelineIDs(), r.Limited)
	}
	if r.Lists != nil {
		t.Fatalf("a subscribed room names lists %v", r.Lists)
	}
	if got := r.stateKeys(); !slices.Contains(got, "m.room.member|"+string(bob.UserID)) {
		t.Fatalf("required_state %v lacks the sender bob", got)
	}
	msgs, err := alice.Messages(context.Background(), room, r.PrevBatch, "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	var older []id.EventID
	for _, ev := range msgs.Chunk {
		older = append(older, ev.ID)
	}
	slices.Reverse(older)
	if !slices.Equal(older, sent[:10]) {
		t.Fatalf("/messages from prev_batch = %v, want %v", older, sent[:10])
	}

	// Subscriptions are sticky (matrix-js-sdk sends each once) until
	// unsubscribe_rooms names them.
	conn.sync(t, subscriptionRequest(other), 0)
	m1, m2 := sendText(t, bob, room, "sticky"), sendText(t, alice, other, "other")
	resp = conn.sync(t, nil, 0)
	if r, o := resp.Rooms[room], resp.Rooms[other]; r == nil || o == nil ||
		!slices.Equal(r.timelineIDs(), []id.EventID{m1}) || !slices.Equal(o.timelineIDs(), []id.EventID{m2}) {
		t.Fatalf("without room_subscriptions: rooms %s, want both subscribed rooms", mustJSON(resp.Rooms))
	}
	conn.sync(t, map[string]any{"unsubscribe_rooms": []id.RoomID{room}}, 0)
	sendText(t, bob, room, "unsubscribed")
	m3 := sendText(t, alice, other, "still subscribed")
	resp = conn.sync(t, nil, 0)
	if resp.Rooms[room] != nil || resp.Rooms[other] == nil || !slices.Equal(resp.Rooms[other].timelineIDs(), []id.EventID{m3}) {
		t.Fatalf("after unsubscribing: rooms %s, want only %s", mustJSON(resp.Rooms), other)
	}
}

// TestSlidingSyncUnknownPos: a pos the node never issued, one of another
// connection, one older than a pos the client has since used, or one from
// before a restart is 400 M_UNKNOWN_POS, after which the client starts
// over without a pos. Retrying the latest pos (a lost response, or a
// request cancelled and resent) works however often it is done.
func TestSlidingSyncUnknownPos(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	conn := newConn(alice, "main")
	p0 := conn.sync(t, roomListRequest(9), 0).Pos

	for _, pos := range []string{"abc_1", "garbage", strings.Split(p0, "_")[0] + "_7"} {
		(&slidingConn{c: alice, connID: "main", pos: pos}).request(t, roomListRequest(9), 0).Want(t, 400, "M_UNKNOWN_POS")
	}
	(&slidingConn{c: alice, connID: "other", pos: p0}).request(t, roomListRequest(9), 0).Want(t, 400, "M_UNKNOWN_POS")

	conn.sync(t, roomListRequest(9), 0) // uses p0
	conn.sync(t, roomListRequest(9), 0) // uses p1: p0 is gone
	(&slidingConn{c: alice, connID: "main", pos: p0}).request(t, roomListRequest(9), 0).Want(t, 400, "M_UNKNOWN_POS")

	msg := sendText(t, alice, room, "hello")
	latest := conn.pos
	for range 6 { // more retries than the positions a connection keeps
		retry := &slidingConn{c: alice, connID: "main", pos: latest}
		resp := retry.sync(t, roomListRequest(9), 0)
		if r := resp.Rooms[room]; r == nil || !slices.Equal(r.timelineIDs(), []id.EventID{msg}) {
			t.Fatalf("retried pos: rooms %s", mustJSON(resp.Rooms))
		}
	}

	restarted := n.Restart()
	u, err := url.Parse(restarted.URL)
	if err != nil {
		t.Fatal(err)
	}
	alice.HomeserverURL = u
	conn.request(t, roomListRequest(9), 0).Want(t, 400, "M_UNKNOWN_POS")
	conn.pos = ""
	if r := conn.sync(t, roomListRequest(9), 0).Rooms[room]; r == nil || !r.Initial {
		t.Fatal("starting over does not send the room afresh")
	}
}

// TestSlidingSyncLongPoll: a request with a pos and a timeout waits, and
// the notifier that wakes /sync wakes it as soon as a message commits.
func TestSlidingSyncLongPoll(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := testnode.PublicRoom(t, alice, bob)
	conn := newConn(alice, "room-list")
	conn.sync(t, roomListRequest(9), 0)

	type result struct {
		resp *slidingResponse
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		r := conn.request(t, roomListRequest(9), 20000)
		var resp *slidingResponse
		if r.Status == 200 {
			resp = testnode.Decode[*slidingResponse](t, r.Body)
		}
		done <- result{resp, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond) // let the request start waiting
	select {
	case <-done:
		t.Fatal("the long-poll returned before anything happened")
	default:
	}
	sent := time.Now()
	msg := sendText(t, bob, room, "wake up")
	res := <-done
	if res.resp == nil {
		t.Fatal("long-poll failed")
	}
	if r := res.resp.Rooms[room]; r == nil || !slices.Equal(r.timelineIDs(), []id.EventID{msg}) {
		t.Fatalf("woken response rooms %s", mustJSON(res.resp.Rooms))
	}
	if wake := time.Since(sent); wake > 2*time.Second || res.took > 10*time.Second {
		t.Fatalf("woke %v after the send, the request took %v", wake, res.took)
	}

	// With nothing happening, the request ends at its timeout with no rooms.
	conn.pos = res.resp.Pos
	start := time.Now()
	resp := conn.sync(t, roomListRequest(9), 300)
	if took := time.Since(start); took < 250*time.Millisecond || len(resp.Rooms) != 0 {
		t.Fatalf("idle long-poll took %v with rooms %v", took, slices.Collect(maps.Keys(resp.Rooms)))
	}
}

// TestSlidingSyncConnections: one device runs Element X's three kinds of
// connection side by side, each with its own positions: the room list,
// a room subscription and the encryption connection, which gets
// to-device messages (deleted once its since acknowledges them), device
// list changes and one-time key counts, and no rooms.
func TestSlidingSyncConnections(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		list, subs, enc := newConn(alice, "room-list"), newConn(alice, "room-subscriptions"), newConn(alice, "encryption")
		list.sync(t, roomListRequest(9), 0)
		subs.sync(t, subscriptionRequest(room), 0)
		first := enc.sync(t, encryptionRequest(""), 0)
		if len(first.Rooms) != 0 || first.Extensions.E2EE == nil || first.Extensions.ToDevice == nil {
			t.Fatalf("encryption connection: rooms %v extensions %s", slices.Collect(maps.Keys(first.Rooms)), mustJSON(first.Extensions))
		}
		since := first.Extensions.ToDevice.NextBatch

		msg := sendText(t, bob, room, "to everyone")
		for _, c := range []*slidingConn{list, subs} {
			body := roomListRequest(9)
			if c == subs {
				body = subscriptionRequest(room)
			}
			if r := c.sync(t, body, 0).Rooms[room]; r == nil || !slices.Equal(r.timelineIDs(), []id.EventID{msg}) {
				t.Fatalf("connection %s: room %s", c.connID, mustJSON(r))
			}
		}

		// Bob's device keys change and he sends alice's device a message.
		testnode.Call(t, bob, "POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": map[string]any{
			"user_id": bob.UserID, "device_id": bob.DeviceID, "algorithms": []string{"m.megolm.v1.aes-sha2"},
			"keys": map[string]any{"ed25519:" + string(bob.DeviceID): "bobkey", "curve25519:" + string(bob.DeviceID): "bobcurve"},
		}}).OK(t)
		testnode.Call(t, alice, "POST", "/_matrix/client/v3/keys/upload", map[string]any{"one_time_keys": map[string]any{
			"curve25519:AAAAAQ": "k1", "curve25519:AAAAAg": "k2",
		}}).OK(t)
		_, err := bob.SendToDevice(context.Background(), event.Type{Type: "m.test", Class: event.ToDeviceEventType}, &mautrix.ReqSendToDevice{
			Messages: map[id.UserID]map[id.DeviceID]*event.Content{alice.UserID: {alice.DeviceID: {Raw: map[string]any{"n": 1}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp := enc.sync(t, encryptionRequest(since), 5000)
		e2ee, td := resp.Extensions.E2EE, resp.Extensions.ToDevice
		if e2ee == nil || e2ee.DeviceLists == nil || !slices.Contains(e2ee.DeviceLists.Changed, bob.UserID) {
			t.Fatalf("e2ee = %s, want bob's device list change", mustJSON(e2ee))
		}
		if e2ee.OTKCounts["curve25519"] != 2 || e2ee.FallbackTypes == nil {
			t.Fatalf("e2ee counts = %v, fallback types %v", e2ee.OTKCounts, e2ee.FallbackTypes)
		}
		if td == nil || len(td.Events) != 1 || td.Events[0].Sender != bob.UserID || td.NextBatch == since {
			t.Fatalf("to_device = %s, want bob's message and a new next_batch", mustJSON(td))
		}
		if len(resp.Rooms) != 0 {
			t.Fatalf("encryption connection got rooms %v", slices.Collect(maps.Keys(resp.Rooms)))
		}
		// Repeating the old since redelivers (the response may have been
		// lost); the new since acknowledges and deletes.
		enc2 := newConn(alice, "encryption-2")
		if td := enc2.sync(t, encryptionRequest(since), 0).Extensions.ToDevice; len(td.Events) != 1 {
			t.Fatalf("to_device with the old since = %s, want the message again", mustJSON(td))
		}
		next := td.NextBatch
		if td := enc.sync(t, encryptionRequest(next), 0).Extensions.ToDevice; len(td.Events) != 0 {
			t.Fatalf("to_device after acknowledging = %s", mustJSON(td))
		}
		if td := enc2.sync(t, encryptionRequest(since), 0).Extensions.ToDevice; len(td.Events) != 0 {
			t.Fatalf("an acknowledged message came back: %s", mustJSON(td))
		}
	})
}

// TestSlidingSyncConcurrentSenders: while several users send into several
// rooms at once, a follower long-polling one connection sees every event
// exactly once across its responses, none lost and none repeated.
func TestSlidingSyncConcurrentSenders(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		const senders, perSender = 6, 15
		follower := n.Register("follower")
		var rooms []id.RoomID
		for range 3 {
			rooms = append(rooms, testnode.CreateRoom(t, follower, &mautrix.ReqCreateRoom{Preset: "public_chat"}))
		}
		var clients []*mautrix.Client
		for i := range senders {
			c := n.Register(fmt.Sprintf("sender%d", i))
			for _, r := range rooms {
				testnode.Join(t, c, r)
			}
			clients = append(clients, c)
		}
		body := map[string]any{"lists": map[string]any{"all": map[string]any{
			"ranges": [][]int{{0, 9}}, "timeline_limit": 500, "required_state": [][]string{{"m.room.member", "$LAZY"}},
		}}}
		conn := newConn(follower, "follow")
		conn.sync(t, body, 0)

		sentCh := make(chan id.EventID, senders*perSender)
		errs := make(chan error, senders)
		for i, c := range clients {
			go func() {
				for j := range perSender {
					resp, err := c.SendText(context.Background(), rooms[(i+j)%len(rooms)], fmt.Sprintf("%d/%d", i, j))
					if err != nil {
						errs <- err
						return
					}
					sentCh <- resp.EventID
				}
				errs <- nil
			}()
		}
		seen := map[id.EventID]int{}
		deadline := time.Now().Add(60 * time.Second)
		for len(seen) < senders*perSender && time.Now().Before(deadline) {
			resp := conn.sync(t, body, 2000)
			for roomID, r := range resp.Rooms {
				if r.Limited {
					t.Fatalf("room %s: limited timeline of %d events", roomID, len(r.Timeline))
				}
				for _, ev := range r.Timeline {
					if ev.Type == event.EventMessage {
						seen[ev.ID]++
					}
				}
			}
		}
		for range senders {
			if err := <-errs; err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		close(sentCh)
		count := 0
		for evID := range sentCh {
			count++
			if seen[evID] != 1 {
				t.Errorf("event %s seen %d times", evID, seen[evID])
			}
		}
		if count != senders*perSender || len(seen) != count {
			t.Fatalf("sent %d, seen %d distinct", count, len(seen))
		}
	})
}

// TestSlidingSyncFilters: list filters select by is_dm (m.direct),
// is_encrypted, is_invite, room_types and not_room_types (null for rooms
// without a type), spaces (children of joined spaces), and tags and
// not_tags (m.tag, not_tags winning); count counts what passes.
func TestSlidingSyncFilters(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice, bob := n.Register("alice"), n.Register("bob")
	ctx := context.Background()
	plain := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	encrypted := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", InitialState: []*event.Event{{
		Type: event.StateEncryption, Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
	}}})
	dm := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{alice.UserID}})
	testnode.Join(t, alice, dm)
	if err := alice.SetAccountData(ctx, "m.direct", map[id.UserID][]id.RoomID{bob.UserID: {dm}}); err != nil {
		t.Fatal(err)
	}
	space := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{CreationContent: map[string]any{"type": "m.space"}})
	testnode.SendState(t, alice, space, event.StateSpaceChild, string(plain), map[string]any{"via": []string{"localhost"}})
	invite := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})
	for room, tags := range map[id.RoomID][]string{encrypted: {"m.favourite"}, plain: {"u.work", "m.lowpriority"}} {
		for _, tag := range tags {
			if err := alice.AddTag(ctx, room, event.RoomTag(tag), 0.5); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, tc := range []struct {
		name    string
		filters map[string]any
		want    []id.RoomID
	}{
		{"none", nil, []id.RoomID{plain, encrypted, dm, space, invite}},
		{"is_dm", map[string]any{"is_dm": true}, []id.RoomID{dm}},
		{"not is_dm", map[string]any{"is_dm": false}, []id.RoomID{plain, encrypted, space, invite}},
		{"is_encrypted", map[string]any{"is_encrypted": true}, []id.RoomID{encrypted}},
		{"is_invite", map[string]any{"is_invite": true}, []id.RoomID{invite}},
		{"is_invited false", map[string]any{"is_invited": false}, []id.RoomID{plain, encrypted, dm, space}},
		{"room_types space", map[string]any{"room_types": []any{"m.space"}}, []id.RoomID{space}},
		{"not_room_types space", map[string]any{"not_room_types": []any{"m.space"}}, []id.RoomID{plain, encrypted, dm, invite}},
		{"room_types null", map[string]any{"room_types": []any{nil}, "is_invite": false}, []id.RoomID{plain, encrypted, dm}},
		{"spaces", map[string]any{"spaces": []id.RoomID{space}}, []id.RoomID{plain}},
		{"tags", map[string]any{"tags": []string{"m.favourite"}}, []id.RoomID{encrypted}},
		{"not_tags", map[string]any{"not_tags": []string{"m.lowpriority"}}, []id.RoomID{encrypted, dm, space, invite}},
		{"not_tags wins", map[string]any{"tags": []string{"m.favourite", "u.work"}, "not_tags": []string{"m.lowpriority"}}, []id.RoomID{encrypted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list := map[string]any{"ranges": [][]int{{0, 99}}, "timeline_limit": 0, "required_state": [][]string{}}
			if tc.filters != nil {
				list["filters"] = tc.filters
			}
			resp := newConn(alice, "").sync(t, map[string]any{"lists": map[string]any{"l": list}}, 0)
			got := slices.Sorted(maps.Keys(resp.Rooms))
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) || resp.Lists["l"].Count != len(want) {
				t.Fatalf("rooms %v count %d, want %v", got, resp.Lists["l"].Count, want)
			}
		})
	}
}

// TestSlidingSyncMemberships: an invite carries invite_state (and is_dm
// for a direct invite), a knock knock_state; accepting the invite sends
// the room afresh as joined; a kick shows the room as left, up to the
// kick, while a room the user left themselves is not listed.
func TestSlidingSyncMemberships(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		invited := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Invited", IsDirect: true, Invite: []id.UserID{bob.UserID}})
		knockRule := []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}}
		knocked := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Knock here", RoomVersion: id.RoomV10, InitialState: knockRule})
		if _, err := bob.KnockRoom(ctx, knocked.String(), &mautrix.ReqKnockRoom{}); err != nil {
			t.Fatalf("knock: %v", err)
		}
		left := testnode.PublicRoom(t, alice, bob)
		testnode.Leave(t, bob, left)

		conn := newConn(bob, "room-list")
		resp := conn.sync(t, roomListRequest(19), 0)
		inv, kn := resp.Rooms[invited], resp.Rooms[knocked]
		if inv == nil || inv.Membership != "invite" || !inv.Initial || inv.IsDM == nil || !*inv.IsDM || len(inv.Timeline) != 0 {
			t.Fatalf("invited room %s", mustJSON(inv))
		}
		if testnode.EventContent(inv.InviteState, "m.room.name")["name"] != "Invited" {
			t.Fatalf("invite_state lacks the name: %s", mustJSON(inv.InviteState))
		}
		if kn == nil || kn.Membership != "knock" || testnode.EventContent(kn.KnockState, "m.room.name")["name"] != "Knock here" {
			t.Fatalf("knocked room %s", mustJSON(kn))
		}
		if resp.Rooms[left] != nil || resp.Lists["all_rooms"].Count != 2 {
			t.Fatalf("a room bob left himself is listed (count %d)", resp.Lists["all_rooms"].Count)
		}

		testnode.Join(t, bob, invited)
		resp = conn.sync(t, roomListRequest(19), 0)
		if r := resp.Rooms[invited]; r == nil || r.Membership != "join" || !r.Initial || r.Name != "Invited" || len(r.Timeline) != 1 {
			t.Fatalf("joined room after the invite %s", mustJSON(r))
		}

		if _, err := alice.KickUser(ctx, invited, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "bye"}); err != nil {
			t.Fatal(err)
		}
		after := sendText(t, alice, invited, "after the kick")
		resp = conn.sync(t, roomListRequest(19), 0)
		r := resp.Rooms[invited]
		if r == nil || r.Membership != "leave" || len(r.Timeline) != 1 || r.Timeline[0].Type != event.StateMember || r.Initial {
			t.Fatalf("room after the kick %s", mustJSON(r))
		}
		if slices.Contains(r.timelineIDs(), after) {
			t.Fatal("a kicked user sees an event from after the kick")
		}
		// Kicked rooms stay in the list; a new connection gets them too.
		if resp := newConn(bob, "").sync(t, roomListRequest(19), 0); resp.Rooms[invited] == nil || resp.Rooms[invited].Membership != "leave" {
			t.Fatalf("a new connection lacks the room bob was kicked from: %s", mustJSON(resp.Rooms))
		}
	})
}

// TestSlidingSyncExtensions: account_data (global and the window's rooms),
// receipts and typing, in full for a new connection and then what
// changed; a room outside the extension's lists gets none.
func TestSlidingSyncExtensions(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		msg := sendText(t, bob, room, "read me")
		if err := alice.SetAccountData(ctx, "org.example.global", map[string]any{"a": 1}); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetRoomAccountData(ctx, room, "org.example.room", map[string]any{"b": 2}); err != nil {
			t.Fatal(err)
		}
		if err := bob.SendReceipt(ctx, room, msg, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		body := roomListRequest(9)
		body["extensions"] = map[string]any{
			"account_data": map[string]any{"enabled": true},
			"receipts":     map[string]any{"enabled": true, "lists": []string{"all_rooms"}},
			"typing":       map[string]any{"enabled": true},
		}
		conn := newConn(alice, "ext")
		resp := conn.sync(t, body, 0)
		ad := resp.Extensions.AccountData
		if ad == nil || testnode.EventContent(ad.Global, "org.example.global")["a"] != float64(1) ||
			testnode.EventContent(ad.Rooms[room], "org.example.room")["b"] != float64(2) {
			t.Fatalf("account_data = %s", mustJSON(ad))
		}
		rc := resp.Extensions.Receipts
		if rc == nil || rc.Rooms[room] == nil || rc.Rooms[room].Type.Type != "m.receipt" ||
			!strings.Contains(mustJSON(rc.Rooms[room].Content.Raw), string(bob.UserID)) {
			t.Fatalf("receipts = %s", mustJSON(rc))
		}

		if _, err := bob.UserTyping(ctx, room, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		resp = conn.sync(t, body, 5000)
		ty := resp.Extensions.Typing
		if ty == nil || ty.Rooms[room] == nil || !strings.Contains(mustJSON(ty.Rooms[room].Content.Raw), string(bob.UserID)) {
			t.Fatalf("typing = %s", mustJSON(ty))
		}
		if resp.Extensions.AccountData != nil || resp.Extensions.Receipts != nil {
			t.Fatalf("unchanged account data or receipts sent again: %s", mustJSON(resp.Extensions))
		}

		// Receipts scoped to another list: none for this room.
		body["extensions"] = map[string]any{"receipts": map[string]any{"enabled": true, "lists": []string{"other"}}}
		if err := bob.SendReceipt(ctx, room, msg, event.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatal(err)
		}
		if err := alice.SendReceipt(ctx, room, msg, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		resp = conn.sync(t, body, 0)
		if resp.Extensions.Receipts != nil {
			t.Fatalf("receipts outside the extension's lists: %s", mustJSON(resp.Extensions.Receipts))
		}
		// Alice's receipt cleared her unread count: the room comes with it.
		if r := resp.Rooms[room]; r == nil || r.Notifications == nil || *r.Notifications != 0 {
			t.Fatalf("room after alice's receipt: %s", mustJSON(r))
		}
	})
}

// TestSlidingSyncTombstone: an upgraded room's m.room.tombstone reaches a
// room list that asks for it, and the new room joins the list.
func TestSlidingSyncTombstone(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	old := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	conn := newConn(alice, "room-list")
	conn.sync(t, roomListRequest(9), 0)
	up := testnode.Call(t, alice, "POST", "/_matrix/client/v3/rooms/"+string(old)+"/upgrade", map[string]any{"new_version": "11"}).OK(t)
	newRoom := id.RoomID(up["replacement_room"].(string))
	resp := conn.sync(t, roomListRequest(9), 0)
	or := resp.Rooms[old]
	if or == nil || !slices.Contains(or.stateKeys(), "m.room.tombstone|") {
		t.Fatalf("old room %s, want its tombstone", mustJSON(or))
	}
	if nr := resp.Rooms[newRoom]; nr == nil || !nr.Initial || resp.Lists["all_rooms"].Count != 2 {
		t.Fatalf("new room %s, count %d", mustJSON(nr), resp.Lists["all_rooms"].Count)
	}
}

// TestSlidingSyncBadInput: malformed requests get the spec's errors.
func TestSlidingSyncBadInput(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	for _, tc := range []struct {
		name    string
		body    any
		query   string
		errcode string
	}{
		{"not json", "{", "", "M_NOT_JSON"},
		{"not an object", "[]", "", "M_BAD_JSON"},
		{"range backwards", map[string]any{"lists": map[string]any{"l": map[string]any{"ranges": [][]int{{5, 1}}}}}, "", "M_INVALID_PARAM"},
		{"range of three", map[string]any{"lists": map[string]any{"l": map[string]any{"ranges": [][]int{{0, 1, 2}}}}}, "", "M_INVALID_PARAM"},
		{"negative timeline_limit", map[string]any{"lists": map[string]any{"l": map[string]any{"timeline_limit": -1}}}, "", "M_INVALID_PARAM"},
		{"required_state triple", map[string]any{"lists": map[string]any{"l": map[string]any{"required_state": [][]string{{"a", "b", "c"}}}}}, "", "M_BAD_JSON"},
		{"subscription not a room", map[string]any{"room_subscriptions": map[string]any{"nope": map[string]any{}}}, "", "M_BAD_JSON"},
		{"bad timeout", map[string]any{}, "?timeout=soon", "M_INVALID_PARAM"},
		{"bad set_presence", map[string]any{"set_presence": "away"}, "", "M_INVALID_PARAM"},
		{"bad to_device since", map[string]any{"extensions": map[string]any{"to_device": map[string]any{"enabled": true, "since": "x"}}}, "", "M_INVALID_PARAM"},
		{"extension not an object", map[string]any{"extensions": map[string]any{"e2ee": true}}, "", "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testnode.Call(t, alice, "POST", sync.SlidingPath+tc.query, tc.body).Want(t, 400, tc.errcode)
		})
	}
	n.Do(t, "POST", sync.SlidingPath, "", map[string]any{}).Want(t, 401, "M_MISSING_TOKEN")
}

// TestSlidingSyncExpandedTimeline: a room the room list sent with its
// newest event only, then opened through a subscription with
// timeline_limit 20 on the same connection, comes back at once with its
// newest 20 events, marked as an expanded timeline, not as new.
func TestSlidingSyncExpandedTimeline(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	var sent []id.EventID
	for i := range 25 {
		sent = append(sent, sendText(t, alice, room, fmt.Sprintf("m%d", i)))
	}
	conn := newConn(alice, "room-list")
	if r := conn.sync(t, roomListRequest(9), 0).Rooms[room]; r == nil || len(r.Timeline) != 1 {
		t.Fatalf("room list: %s", mustJSON(r))
	}
	body := roomListRequest(9)
	maps.Copy(body, subscriptionRequest(room))
	r := conn.sync(t, body, 0).Rooms[room]
	if r == nil || !slices.Equal(r.timelineIDs(), sent[5:]) || r.Initial || !r.Limited || !r.Expanded {
		t.Fatalf("opened room: %s", mustJSON(r))
	}
	raw := conn.request(t, body, 0)
	if raw.Status != 200 || strings.Contains(string(raw.Body), "expanded_timeline") {
		t.Fatalf("the expansion repeats: %s", raw.Body)
	}
}
