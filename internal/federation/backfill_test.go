package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// pageBackIDs pages c's /messages of the room backwards from from (the
// end when empty), limit events at a time, until no end token comes, and
// returns the events read, newest first.
func pageBackIDs(t *testing.T, c *mautrix.Client, roomID id.RoomID, from string, limit int) []*event.Event {
	t.Helper()
	var out []*event.Event
	for range 200 {
		resp, err := c.Messages(context.Background(), roomID, from, "", mautrix.DirectionBackward, nil, limit)
		if err != nil {
			t.Fatalf("%s's /messages of %s from %q: %v", c.UserID, roomID, from, err)
		}
		out = append(out, resp.Chunk...)
		if resp.End == "" {
			return out
		}
		from = resp.End
	}
	t.Fatalf("%s's /messages of %s never ends", c.UserID, roomID)
	return nil
}

// messageIDs returns the IDs of the m.room.message events of evs, in order.
func messageIDs(evs []*event.Event) []id.EventID {
	var out []id.EventID
	for _, ev := range evs {
		if ev.Type == event.EventMessage {
			out = append(out, ev.ID)
		}
	}
	return out
}

// sendTexts sends n messages and returns their IDs, oldest first.
func sendTexts(t *testing.T, c *mautrix.Client, roomID id.RoomID, n int, prefix string) []id.EventID {
	t.Helper()
	var ids []id.EventID
	for i := range n {
		ids = append(ids, testnode.SendText(t, c, roomID, fmt.Sprintf("%s %d", prefix, i)))
	}
	return ids
}

// TestBackfillAfterRemoteJoin: bob on B joins a room of A's with 120
// messages. Paging back through /messages on B fetches the history from A
// (/backfill) and shows every message once, in order, down to the create
// event; a second pass answers the same. /context around a backfilled
// message shows its neighbours, and its start token pages on from there.
// In a room whose history_visibility is joined, bob sees nothing from
// before his join, but his join. Both nodes run on SQLite, then on
// PostgreSQL.
func TestBackfillAfterRemoteJoin(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testBackfillAfterRemoteJoin(t, engine) })
	}
}

func testBackfillAfterRemoteJoin(t *testing.T, engine testnode.Engine) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, engine, ca)
	b := testnode.StartFederating(t, engine, ca)
	alice, bob := a.Register("alice"), b.Register("bob")

	roomID, alias := publicRoomWithAlias(t, a, alice, "history")
	sent := sendTexts(t, alice, roomID, 120, "history")
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	first := pageBackIDs(t, bob, roomID, "", 25)
	got := messageIDs(first)
	slices.Reverse(got)
	if !slices.Equal(got, sent) {
		t.Fatalf("bob's /messages shows %d messages, want the %d alice sent, in order", len(got), len(sent))
	}
	if last := first[len(first)-1]; last.Type != event.StateCreate {
		t.Errorf("bob's /messages ends with %s, want the create event", last.Type.Type)
	}
	second := pageBackIDs(t, bob, roomID, "", 25)
	if len(second) != len(first) || !slices.EqualFunc(first, second, func(x, y *event.Event) bool { return x.ID == y.ID }) {
		t.Errorf("a second pass shows %d events, the first %d", len(second), len(first))
	}

	// /context around message 60, which B backfilled.
	resp := testnode.Call(t, bob, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(string(roomID))+
		"/context/"+url.PathEscape(string(sent[60]))+"?limit=10", nil)
	if resp.Status != 200 {
		t.Fatalf("/context of a backfilled event: %d %s", resp.Status, resp.Body)
	}
	var c struct {
		Start  string         `json:"start"`
		Before []*event.Event `json:"events_before"`
		After  []*event.Event `json:"events_after"`
		Event  *event.Event   `json:"event"`
		End    string         `json:"end"`
	}
	if err := json.Unmarshal(resp.Body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Event.ID != sent[60] || !slices.Equal(messageIDs(c.Before), []id.EventID{sent[59], sent[58], sent[57], sent[56], sent[55]}) ||
		!slices.Equal(messageIDs(c.After), []id.EventID{sent[61], sent[62], sent[63], sent[64], sent[65]}) {
		t.Errorf("/context of message 60: before %v, after %v", messageIDs(c.Before), messageIDs(c.After))
	}
	msgs, err := bob.Messages(ctx, roomID, c.Start, "", mautrix.DirectionBackward, nil, 3)
	if err != nil {
		t.Fatalf("/messages from /context's start: %v", err)
	}
	if ids := messageIDs(msgs.Chunk); !slices.Equal(ids, []id.EventID{sent[54], sent[53], sent[52]}) {
		t.Errorf("/messages from /context's start: %v, want messages 54 to 52", ids)
	}

	// history_visibility joined: nothing before bob's join.
	private := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
		Type: event.StateHistoryVisibility, StateKey: new(string),
		Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}},
	}}})
	sendTexts(t, alice, private, 30, "before bob")
	_, err = bob.JoinRoom(ctx, string(private), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}})
	if err != nil {
		t.Fatalf("bob joins the joined-only room: %v", err)
	}
	evs := pageBackIDs(t, bob, private, "", 25)
	if ids := messageIDs(evs); len(ids) != 0 {
		t.Errorf("bob sees %d messages from before his join under history_visibility joined", len(ids))
	}
	if !slices.ContainsFunc(evs, func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == string(bob.UserID)
	}) {
		t.Errorf("bob does not see his own join")
	}
}
