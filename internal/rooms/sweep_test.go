package rooms

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// TestPendingRedactionsExpire: a redaction of an event this node does not
// have is remembered for its target, and forgotten by the sweep once it
// is older than the cutoff, not before; rows from before received_ts was
// kept are dated by the first sweep instead of expiring at once.
func TestPendingRedactionsExpire(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	pending := func() int {
		t.Helper()
		var n int
		if err := env.db.QueryRow(ctx, "SELECT COUNT(*) FROM pending_redactions WHERE room_id = $1", roomID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, target := range []id.EventID{"$never-arrives-1", "$never-arrives-2"} {
		if _, err := e.Send(ctx, roomID, Proto{Type: "m.room.redaction", Sender: alice, Redacts: target, Content: json.RawMessage(`{}`)}); err != nil {
			t.Fatalf("redact %s: %v", target, err)
		}
	}
	if got := pending(); got != 2 {
		t.Fatalf("%d pending redactions, want 2", got)
	}
	// One from before the column existed.
	if err := env.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE pending_redactions SET received_ts = 0 WHERE target_id = '$never-arrives-2'")
		return err
	}); err != nil {
		t.Fatal(err)
	}

	if n, err := e.ExpirePendingRedactions(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 || pending() != 2 {
		t.Fatalf("sweep with a cutoff an hour ago: %d expired (%v), %d left; want none expired", n, err, pending())
	}
	if n, err := e.ExpirePendingRedactions(ctx, time.Now().Add(time.Second)); err != nil || n != 2 || pending() != 0 {
		t.Fatalf("sweep with a cutoff past both: %d expired (%v), %d left; want both expired", n, err, pending())
	}
}
