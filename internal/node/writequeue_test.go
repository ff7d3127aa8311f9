package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestFullWriteQueue keeps the database writer's queue full while senders
// in several rooms send mentions of @room: each sender holds its room's
// lock while it waits for room in the queue, and the writer evaluates the
// members' push rules (power levels, display names) for the events ahead
// of it. The writer must never wait for a room's lock, or the two wait on
// each other and every write on the node stops.
func TestFullWriteQueue(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice, bob := n.Register("alice"), n.Register("bob")
	var roomIDs []id.RoomID
	for range 4 {
		roomIDs = append(roomIDs, testnode.PublicRoom(t, alice, bob))
	}

	fillCtx, stopFilling := context.WithCancel(ctx)
	var fillers sync.WaitGroup
	for range 8 {
		fillers.Go(func() {
			for fillCtx.Err() == nil {
				n.DB.Enqueue(fillCtx, func(*storage.Tx) error { return nil })
			}
		})
	}

	const perSender = 10
	errs := make(chan error, 4*len(roomIDs)*perSender)
	var senders sync.WaitGroup
	for _, roomID := range roomIDs {
		for i := range 4 {
			sender := alice.UserID
			if i%2 == 1 {
				sender = bob.UserID
			}
			senders.Go(func() {
				for j := range perSender {
					content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("@room %d/%d", i, j)})
					if _, err := n.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: sender, Content: content}); err != nil {
						errs <- err
					}
				}
			})
		}
	}
	done := make(chan struct{})
	go func() { senders.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the sends did not finish: the senders and the database writer wait on each other")
	}
	stopFilling()
	fillers.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("send: %v", err)
	}
	for _, roomID := range roomIDs {
		var sent int
		if err := n.DB.QueryRow(ctx, "SELECT COUNT(*) FROM events WHERE room_id = $1 AND type = 'm.room.message'", roomID).Scan(&sent); err != nil {
			t.Fatal(err)
		}
		if sent != 4*perSender {
			t.Errorf("room %s has %d messages, want %d", roomID, sent, 4*perSender)
		}
	}
}
