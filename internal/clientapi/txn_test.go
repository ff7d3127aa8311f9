package clientapi_test

import (
	"testing"

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
