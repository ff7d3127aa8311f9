package node_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

func TestChatBetweenTwoUsers(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "chat", Invite: []id.UserID{bob.UserID}, Preset: "private_chat"})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		// Bob sees the invite in sync.
		s, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatalf("bob sync: %v", err)
		}
		if _, ok := s.Rooms.Invite[room.RoomID]; !ok {
			t.Fatalf("bob has no invite for %s: %+v", room.RoomID, s.Rooms)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatalf("bob join: %v", err)
		}
		since := s.NextBatch
		// A long-poll wakes when Alice sends.
		done := make(chan *mautrix.RespSync, 1)
		go func() {
			r, err := bob.SyncRequest(ctx, 10000, since, "", false, "")
			if err != nil {
				t.Errorf("bob long-poll: %v", err)
			}
			done <- r
		}()
		time.Sleep(50 * time.Millisecond)
		sent, err := alice.SendText(ctx, room.RoomID, "hello bob")
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		var got *mautrix.RespSync
		select {
		case got = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("long-poll did not wake")
		}
		if got == nil {
			t.FailNow()
		}
		found := false
		for rid, jr := range got.Rooms.Join {
			for _, ev := range jr.Timeline.Events {
				if rid == room.RoomID && ev.ID == sent.EventID {
					found = true
				}
			}
		}
		if !found {
			// The join may have come in first; one more sync must have it.
			r, err := bob.SyncRequest(ctx, 1000, got.NextBatch, "", false, "")
			if err == nil {
				for _, ev := range r.Rooms.Join[room.RoomID].Timeline.Events {
					if ev.ID == sent.EventID {
						found = true
					}
				}
			}
		}
		if !found {
			t.Fatalf("message %s not delivered to bob", sent.EventID)
		}
		// Pagination backwards sees the whole conversation in order.
		for i := range 5 {
			if _, err := bob.SendText(ctx, room.RoomID, "reply "+string(rune('a'+i))); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 3)
		if err != nil {
			t.Fatalf("messages: %v", err)
		}
		if len(msgs.Chunk) != 3 || msgs.Chunk[0].Content.Raw["body"] != "reply e" {
			t.Fatalf("first page wrong: %d events, first %v", len(msgs.Chunk), msgs.Chunk)
		}
		var all []*event.Event
		all = append(all, msgs.Chunk...)
		for msgs.End != "" {
			msgs, err = alice.Messages(ctx, room.RoomID, msgs.End, "", mautrix.DirectionBackward, nil, 3)
			if err != nil {
				t.Fatalf("messages: %v", err)
			}
			all = append(all, msgs.Chunk...)
		}
		if last := all[len(all)-1]; last.Type != event.StateCreate {
			t.Fatalf("backward pagination should end at the create event, got %s", last.Type)
		}
		// Edits and redactions.
		if _, err := alice.RedactEvent(ctx, room.RoomID, sent.EventID); err != nil {
			t.Fatalf("redact: %v", err)
		}
		ev, err := bob.GetEvent(ctx, room.RoomID, sent.EventID)
		if err != nil {
			t.Fatalf("get event: %v", err)
		}
		if len(ev.Content.Raw) != 0 || ev.Unsigned.RedactedBecause == nil {
			t.Fatalf("redacted event still has content %v or no redacted_because", ev.Content.Raw)
		}
	})
}

func TestRestartKeepsData(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := n.Register("alice")
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "persist"})
		if err != nil {
			t.Fatal(err)
		}
		sent, err := alice.SendText(ctx, room.RoomID, "still here")
		if err != nil {
			t.Fatal(err)
		}
		n2 := n.Restart()
		alice.HomeserverURL = mustURL(t, n2.URL)
		ev, err := alice.GetEvent(ctx, room.RoomID, sent.EventID)
		if err != nil {
			t.Fatalf("after restart: %v", err)
		}
		if ev.Content.Raw["body"] != "still here" {
			t.Fatalf("wrong body %v", ev.Content.Raw)
		}
		if _, err := alice.SendText(ctx, room.RoomID, "and more"); err != nil {
			t.Fatalf("send after restart: %v", err)
		}
	})
}
