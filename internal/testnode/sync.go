package testnode

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// SyncOnce runs one /sync for c from since (initial when empty), waiting
// up to timeoutMS for news; the test fails on an error.
func SyncOnce(t testing.TB, c *mautrix.Client, since string, timeoutMS int) *mautrix.RespSync {
	t.Helper()
	s, err := c.SyncRequest(context.Background(), timeoutMS, since, "", false, "")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return s
}

// EventContent returns the content of the last event of the type in evs,
// or nil if there is none.
func EventContent(evs []*event.Event, typ string) map[string]any {
	var out map[string]any
	for _, ev := range evs {
		if ev.Type.Type == typ {
			out = ev.Content.Raw
			if out == nil {
				json.Unmarshal(ev.Content.VeryRaw, &out)
			}
		}
	}
	return out
}

// CountEvents returns how many events of the type evs holds.
func CountEvents(evs []*event.Event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type.Type == typ {
			n++
		}
	}
	return n
}

// PublicRoom creates a public_chat room of owner's, makes the members join
// it and returns its ID; the test fails on an error.
func PublicRoom(t testing.TB, owner *mautrix.Client, members ...*mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	room, err := owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	for _, m := range members {
		if _, err := m.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatalf("%s joins: %v", m.UserID, err)
		}
	}
	return room.RoomID
}
