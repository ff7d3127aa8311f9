package sync_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestIgnoredUsersHiddenFromSync mirrors Complement's
// TestInviteFromIgnoredUsersDoesNotAppearInSync and follows the spec's
// "Ignoring Users": invites and messages from an ignored user are not sent
// to the client, while those of others are.
func TestIgnoredUsersHiddenFromSync(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, chris := n.Register("alice"), n.Register("bob"), n.Register("chris")
		shared := testnode.PublicRoom(t, alice, bob, chris)
		err := alice.SetAccountData(ctx, "m.ignored_user_list", map[string]any{
			"ignored_users": map[id.UserID]any{bob.UserID: map[string]any{}},
		})
		if err != nil {
			t.Fatalf("ignore bob: %v", err)
		}
		since := testnode.SyncOnce(t, alice, "", 0).NextBatch

		bobRoom := testnode.CreateRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})
		chrisRoom := testnode.CreateRoom(t, chris, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})
		fromBob := testnode.SendText(t, bob, shared, "from bob")
		fromChris := testnode.SendText(t, chris, shared, "from chris")

		for _, s := range []*mautrix.RespSync{testnode.SyncOnce(t, alice, since, 0), testnode.SyncOnce(t, alice, "", 0)} {
			if s.Rooms.Invite[chrisRoom] == nil {
				t.Fatal("chris's invite is missing")
			}
			if s.Rooms.Invite[bobRoom] != nil {
				t.Fatal("the invite of ignored bob is sent")
			}
			var seenChris bool
			for _, ev := range s.Rooms.Join[shared].Timeline.Events {
				seenChris = seenChris || ev.ID == fromChris
				if ev.ID == fromBob {
					t.Fatal("the message of ignored bob is sent")
				}
			}
			if !seenChris {
				t.Fatal("chris's message is missing")
			}
		}
	})
}
