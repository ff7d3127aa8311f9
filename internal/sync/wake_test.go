package sync_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestWakeDoesNotWaitForSender checks that a long-polling /sync is woken
// as soon as the event that concerns it is visible, not once the sender's
// goroutine has learnt of the commit and run the OnEvent hooks: the first
// of those hooks holds the sender until the woken /sync has answered. The
// event is of a type no push rule matches, so that no change of unread
// counts wakes the /sync instead.
func TestWakeDoesNotWaitForSender(t *testing.T) {
	const pingType = "org.example.ping"
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite)
	owner, waiter := n.Register("owner"), n.Register("waiter")
	roomID := testnode.PublicRoom(t, owner, waiter)
	h := n.Handler()
	filter := `{"room":{"timeline":{"limit":1}}}`
	since, _, err := syncOnce(h, waiter.AccessToken, "", filter, 0)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the node stops
	n.Rooms.OnEvent = append([]func(*rooms.Event, *rooms.RoomInfo){func(ev *rooms.Event, _ *rooms.RoomInfo) {
		if ev.Type == pingType {
			<-release
		}
	}}, n.Rooms.OnEvent...)

	type answer struct {
		events int
		err    error
	}
	woken := make(chan answer, 1)
	go func() {
		_, events, err := syncOnce(h, waiter.AccessToken, since, filter, time.Minute)
		woken <- answer{events, err}
	}()
	testnode.WaitFor(t, time.Minute, "the long-poll waiting", func() bool { return n.Sync.Waiting() == 1 })
	sent := make(chan error, 1)
	go func() {
		_, err := n.Rooms.Send(ctx, roomID, rooms.Proto{Type: pingType, Sender: owner.UserID, Content: json.RawMessage(`{}`)})
		sent <- err
	}()
	select {
	case a := <-woken:
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.events != 1 {
			t.Fatalf("the woken /sync has %d events, want the one sent", a.events)
		}
	case err := <-sent:
		t.Fatalf("the send returned (%v) while its OnEvent hook was held", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the long-poll was not woken while the sender's OnEvent hooks were held")
	}
	select {
	case err := <-sent:
		t.Fatalf("the send returned (%v) while its OnEvent hook was held", err)
	default:
	}
}
