package node_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/testnode"
)

func bodies(evs []*event.Event) map[string]bool {
	out := map[string]bool{}
	for _, ev := range evs {
		if b, ok := ev.Content.Raw["body"].(string); ok {
			out[b] = true
		}
	}
	return out
}

// TestHistoryVisibility checks each setting against what a newcomer sees in
// /messages and in their first sync.
func TestHistoryVisibility(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice := n.Register("alice")
	for _, tc := range []struct {
		hv                        string
		seeBefore, seeAfterInvite bool
	}{
		{"shared", true, true},
		{"invited", false, true},
		{"joined", false, false},
		{"world_readable", true, true},
	} {
		t.Run(tc.hv, func(t *testing.T) {
			bob := n.Register("bob")
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", InitialState: []*event.Event{{
				Type: event.StateHistoryVisibility, StateKey: ptr(""),
				Content: event.Content{Raw: map[string]any{"history_visibility": tc.hv}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			alice.SendText(ctx, room.RoomID, "before")
			alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID})
			alice.SendText(ctx, room.RoomID, "after invite")
			if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
				t.Fatal(err)
			}
			alice.SendText(ctx, room.RoomID, "after join")
			msgs, err := bob.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
			if err != nil {
				t.Fatal(err)
			}
			check := func(where string, got map[string]bool) {
				t.Helper()
				if got["before"] != tc.seeBefore || got["after invite"] != tc.seeAfterInvite || !got["after join"] {
					t.Errorf("%s: saw %v; want before=%v after-invite=%v after-join=true", where, got, tc.seeBefore, tc.seeAfterInvite)
				}
			}
			check("/messages", bodies(msgs.Chunk))
			s, err := bob.FullSyncRequest(ctx, mautrix.ReqSync{FilterID: `{"room":{"timeline":{"limit":50}}}`})
			if err != nil {
				t.Fatal(err)
			}
			check("initial sync", bodies(s.Rooms.Join[room.RoomID].Timeline.Events))
		})
	}
}

func ptr[T any](v T) *T { return &v }
