package ephemeral_test

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// A read receipt clears the reader's unread notification count (the node
// wires OnRead to the push service).
func TestReceiptClearsUnread(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob, _, roomID := setup(t, n)
		sendText(t, alice, roomID, "one")
		last := sendText(t, alice, roomID, "two")
		unread := func() int {
			t.Helper()
			jr := testnode.SyncOnce(t, bob, "", 0).Rooms.Join[roomID]
			if jr == nil || jr.UnreadNotifications == nil {
				t.Fatalf("no unread_notifications for the room")
			}
			return jr.UnreadNotifications.NotificationCount
		}
		if got := unread(); got != 2 {
			t.Fatalf("unread before receipt: %d, want 2", got)
		}
		if err := bob.SendReceipt(context.Background(), roomID, last, event.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatal(err)
		}
		if got := unread(); got != 0 {
			t.Fatalf("unread after receipt: %d, want 0", got)
		}
	})
}

// TestUnreadCountsSurviveRestart: the stored unread notifications are
// exactly those memory counts, through sends in several rooms, read
// receipts and the sender's own sends (which mark the room read), so a
// restart shows the same counts; and a receipt after a restart clears what
// it covers for good.
func TestUnreadCountsSurviveRestart(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol, room1 := setup(t, n)
		room2 := testnode.PublicRoom(t, alice, bob)
		testnode.Join(t, carol, room1)
		sendText(t, alice, room1, "a1")
		read := sendText(t, alice, room1, "a2")
		sendText(t, alice, room1, "a3")
		sendText(t, alice, room2, "a4")
		sendText(t, alice, room2, "a5")
		if err := bob.SendReceipt(ctx, room1, read, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		sendText(t, bob, room2, "b1") // bob's own send reads room2
		sendText(t, alice, room2, "a6")
		last := sendText(t, alice, room1, "a7")

		unread := func(c *mautrix.Client, rooms ...id.RoomID) []int {
			t.Helper()
			resp := testnode.SyncOnce(t, c, "", 0)
			var out []int
			for _, r := range rooms {
				jr := resp.Rooms.Join[r]
				if jr == nil || jr.UnreadNotifications == nil {
					t.Fatalf("%s: no unread_notifications for %s", c.UserID, r)
				}
				out = append(out, jr.UnreadNotifications.NotificationCount)
			}
			return out
		}
		want := map[id.UserID][]int{bob.UserID: {2, 1}, carol.UserID: {4, 0}}
		check := func(when string) {
			t.Helper()
			if got := unread(bob, room1, room2); !slices.Equal(got, want[bob.UserID]) {
				t.Errorf("%s: bob's unread counts in the two rooms = %v, want %v", when, got, want[bob.UserID])
			}
			if got := unread(carol, room1); got[0] != want[carol.UserID][0] {
				t.Errorf("%s: carol's unread count = %d, want %d", when, got[0], want[carol.UserID][0])
			}
		}
		restart := func() {
			t.Helper()
			cfg := n.Config
			n.Stop()
			n = testnode.StartConfig(t, cfg)
			for _, c := range []*mautrix.Client{alice, bob, carol} {
				u, err := url.Parse(n.URL)
				if err != nil {
					t.Fatal(err)
				}
				c.HomeserverURL = u
			}
		}
		check("before the restart")
		restart()
		check("after the restart")

		if err := bob.SendReceipt(ctx, room1, last, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		want[bob.UserID] = []int{0, 1}
		check("after bob's receipt")
		restart()
		check("after a second restart")
	})
}
