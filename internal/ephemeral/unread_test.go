package ephemeral_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/event"

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
