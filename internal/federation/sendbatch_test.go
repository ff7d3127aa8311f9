package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestSendTransactionOneRoomOneCommit sends A a transaction of 50 PDUs of
// one room, bob's messages built on B, one of which (no other's
// prev_event) has a broken signature: A refuses that one alone, commits
// the other 49 in order in one write (when the first of them reaches the
// OnEvent hooks, the room's committed position already covers the last),
// and alice's long-polling /sync gets the 49 in order.
func TestSendTransactionOneRoomOneCommit(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	origin := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), origin.Register("bob")
	roomID := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	origin.Federation.Outbox.Stop()

	protos := make([]rooms.Proto, 50)
	for i := range protos {
		content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprint("message ", i)})
		protos[i] = rooms.Proto{Type: "m.room.message", Sender: bob.UserID, Content: content}
	}
	evs, err := origin.Rooms.SendMany(ctx, roomID, protos)
	if err != nil {
		t.Fatalf("bob's messages on B: %v", err)
	}
	good, bad := evs[:49], evs[49]
	req := txn(origin.Config.ServerName, a.Config.ServerName, "batch")
	for i, ev := range good {
		if i == 25 {
			req.PDUs = append(req.PDUs, badSignature(t, bad.JSON, good[0].JSON))
		}
		req.PDUs = append(req.PDUs, ev.JSON)
	}

	var mu sync.Mutex
	firstHookPos := int64(-1)
	a.Rooms.OnEvent = append(a.Rooms.OnEvent, func(ev *rooms.Event, _ *rooms.RoomInfo) {
		if ev.ID == good[0].ID {
			mu.Lock()
			firstHookPos = a.Rooms.LastPos(ctx, roomID)
			mu.Unlock()
		}
	})
	filter, err := alice.CreateFilter(ctx, &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	since, err := alice.SyncRequest(ctx, 0, "", filter.FilterID, false, "")
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan []id.EventID, 1)
	go func() {
		var got []id.EventID
		defer func() { synced <- got }()
		token := since.NextBatch
		for len(got) < len(good) {
			resp, err := alice.FullSyncRequest(ctx, mautrix.ReqSync{Since: token, Timeout: 30_000, FilterID: filter.FilterID})
			if err != nil {
				t.Errorf("sync: %v", err)
				return
			}
			token = resp.NextBatch
			if room := resp.Rooms.Join[roomID]; room != nil {
				for _, ev := range room.Timeline.Events {
					got = append(got, ev.ID)
				}
			}
		}
	}()

	resp, err := origin.Federation.Client.SendTransaction(ctx, req)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if len(resp.PDUs) != 50 || resp.PDUs[bad.ID].Error == "" {
		t.Fatalf("answer for %d PDUs, the bad one's %+v", len(resp.PDUs), resp.PDUs[bad.ID])
	}
	for _, ev := range good {
		if e := resp.PDUs[ev.ID].Error; e != "" {
			t.Fatalf("A refused %s: %s", ev.ID, e)
		}
	}
	want := make([]id.EventID, len(good))
	for i, ev := range good {
		want[i] = ev.ID
	}
	if got := <-synced; !slices.Equal(got, want) {
		t.Fatalf("alice's /sync got %d events %v, want the 49 in order", len(got), got)
	}
	last, err := a.Rooms.Event(ctx, good[48].ID)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstHookPos < last.Pos {
		t.Errorf("the first event's hooks ran at position %d, before the last event (%d) committed: not one commit", firstHookPos, last.Pos)
	}
	if _, err := a.Rooms.Event(ctx, bad.ID); err == nil {
		t.Errorf("the PDU with a broken signature was stored")
	}
}

// badSignature returns raw with its signatures replaced by those of
// other, an event of the same server: the event ID is the same, the
// signature does not match it.
func badSignature(t *testing.T, raw, other json.RawMessage) json.RawMessage {
	t.Helper()
	var m, o map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(other, &o); err != nil {
		t.Fatal(err)
	}
	m["signatures"] = o["signatures"]
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
