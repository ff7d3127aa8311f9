package delayed_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/delayed"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// flakySender sends through the node's room engine but loses the outcome
// of its first sends: the first fails before the event reaches the room
// (the database was unreachable), the second after the room committed it
// (the node died before it could forget the scheduled row).
type flakySender struct {
	engine *rooms.Engine
	mu     sync.Mutex
	calls  int
}

var errLost = errors.New("connection lost")

func (f *flakySender) Send(ctx context.Context, roomID id.RoomID, p rooms.Proto) (*rooms.Event, error) {
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.mu.Unlock()
	switch call {
	case 1:
		return nil, errLost
	case 2:
		if _, err := f.engine.Send(ctx, roomID, p); err != nil {
			return nil, err
		}
		return nil, errLost
	}
	return f.engine.Send(ctx, roomID, p)
}

func (f *flakySender) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestDelayedSendAtLeastOnce: a delayed event whose send fails stays
// scheduled and is sent again, and a send again after one that reached the
// room (its outcome lost) does not put the event in the room twice.
func TestDelayedSendAtLeastOnce(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		roomID := room(t, alice, bob)
		sender := &flakySender{engine: n.Rooms}
		svc := delayed.New(n.DB, slog.Default(), sender, time.Hour)
		delayID, err := svc.Schedule(context.Background(), delayed.Event{
			User: alice.UserID, Device: alice.DeviceID, RoomID: roomID, Type: testType,
			Content: []byte(`{"once":true}`), Delay: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		svc.Start()
		defer svc.Stop()
		deadline := time.Now().Add(20 * time.Second)
		for svc.Get(delayID) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("still scheduled after %d sends", sender.callCount())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if c := sender.callCount(); c != 3 {
			t.Fatalf("%d sends, want 3 (two lost outcomes, then one that went through)", c)
		}
		msgs, err := bob.Messages(context.Background(), roomID, "", "", mautrix.DirectionBackward, nil, 50)
		if err != nil {
			t.Fatal(err)
		}
		sent := 0
		for _, ev := range msgs.Chunk {
			if ev.Type.Type == testType {
				sent++
			}
		}
		if sent != 1 {
			t.Fatalf("the delayed event is in the room %d times, want once", sent)
		}
	})
}
