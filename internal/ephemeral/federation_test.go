package ephemeral_test

import (
	"context"
	"encoding/json"
	"testing"

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
