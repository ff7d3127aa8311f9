package clientapi_test

import (
	"fmt"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestTxnIdempotency: a transaction is the device's request to one path.
// The same transaction ID in two rooms sends two messages, a retry on the
// same path answers the first event, and /redact works the same way.
func TestTxnIdempotency(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	roomA, roomB := testnode.PublicRoom(t, alice), testnode.PublicRoom(t, alice)
	put := func(path string, body map[string]any) id.EventID {
		t.Helper()
		evID, _ := testnode.Call(t, alice, "PUT", testnode.V3+path, body).OK(t)["event_id"].(string)
		if evID == "" {
			t.Fatalf("PUT %s answered no event_id", path)
		}
		return id.EventID(evID)
	}
	send := func(roomID id.RoomID, body string) id.EventID {
		return put("/rooms/"+string(roomID)+"/send/m.room.message/t1", map[string]any{"msgtype": "m.text", "body": body})
	}
	redact := func(roomID id.RoomID, target id.EventID) id.EventID {
		return put("/rooms/"+string(roomID)+"/redact/"+string(target)+"/r1", map[string]any{})
	}
	inA, inB := send(roomA, "in A"), send(roomB, "in B")
	if inA == inB {
		t.Fatalf("the same transaction ID in two rooms answered one event, %s", inA)
	}
	for roomID, evID := range map[id.RoomID]id.EventID{roomA: inA, roomB: inB} {
		ev, err := alice.GetEvent(t.Context(), roomID, evID)
		if err != nil {
			t.Fatalf("event %s in %s: %v", evID, roomID, err)
		}
		if ev.RoomID != roomID {
			t.Errorf("event %s is in %s, want %s", evID, ev.RoomID, roomID)
		}
	}
	if again := send(roomA, "in A, retried"); again != inA {
		t.Errorf("a retry in room A answered %s, want %s", again, inA)
	}
	redA, redB := redact(roomA, inA), redact(roomB, inB)
	if redA == redB {
		t.Fatalf("the same redaction transaction ID in two rooms answered one event, %s", redA)
	}
	if again := redact(roomA, inA); again != redA {
		t.Errorf("a retried redaction answered %s, want %s", again, redA)
	}
}

// TestConcurrentTxnRetries: many retries of one transaction sent at once,
// racing the first attempt, answer one event ID to all and store one
// event; the same transaction ID in a second room, sent at the same time,
// is that room's own single event.
func TestConcurrentTxnRetries(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		rooms := []id.RoomID{testnode.PublicRoom(t, alice), testnode.PublicRoom(t, alice)}
		const retries = 24
		ids := make([][]id.EventID, len(rooms))
		errs := make(chan error, len(rooms)*retries)
		var wg sync.WaitGroup
		for r, roomID := range rooms {
			ids[r] = make([]id.EventID, retries)
			for i := range retries {
				wg.Go(func() {
					resp, err := alice.SendMessageEvent(t.Context(), roomID, event.EventMessage,
						map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("attempt %d", i)},
						mautrix.ReqSendEvent{TransactionID: "same-txn"})
					if err != nil {
						errs <- err
						return
					}
					ids[r][i] = resp.EventID
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("send: %v", err)
		}
		for r, roomID := range rooms {
			for i, evID := range ids[r] {
				if evID != ids[r][0] {
					t.Errorf("room %d: attempt %d answered %s, attempt 0 %s", r, i, evID, ids[r][0])
				}
			}
			if r > 0 && ids[r][0] == ids[0][0] {
				t.Errorf("two rooms answered one event %s", ids[r][0])
			}
			msgs, err := alice.Messages(t.Context(), roomID, "", "", mautrix.DirectionBackward, nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			var stored []id.EventID
			for _, evt := range msgs.Chunk {
				if evt.Type == event.EventMessage {
					stored = append(stored, evt.ID)
				}
			}
			if len(stored) != 1 || stored[0] != ids[r][0] {
				t.Errorf("room %d holds messages %v, want only %s", r, stored, ids[r][0])
			}
		}
	})
}
