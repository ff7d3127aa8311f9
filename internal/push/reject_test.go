package push

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// TestRefusedKickKeepsUnread: a kick of a local user marks what notified
// them read (they have left), but a kick the re-check after a
// partial-state resync refuses (the OnReject hook) never happened: the
// user is still joined and has not read what notified them before it,
// which counts again, at once and after a restart, while a receipt they
// sent stays.
func TestRefusedKickKeepsUnread(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, fr, s := openService(t, dsn)
		joined := map[id.UserID]string{alice: "join", bob: "join"}
		sendText(db, fr, s, "$a", bob, joined)
		if err := s.MarkRead(ctx, alice, testRoom, "", db.Visible()); err != nil {
			t.Fatal(err)
		}
		sendText(db, fr, s, "$b", bob, joined)
		sendText(db, fr, s, "$c", bob, joined)
		kick := sendEvent(db, fr, s, "$kick", "m.room.member", bob, ptr(string(alice)), `{"membership":"leave"}`, map[id.UserID]string{alice: "leave", bob: "join"})
		if got := unread(s, alice); got != 0 {
			t.Fatalf("kicked: %d unread, want 0", got)
		}
		if err := db.Write(ctx, func(tx *storage.Tx) error { return s.OnReject(ctx, tx, kick) }); err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*Service{"at once": s, "after a restart": loadService(t, db, nil, fr)} {
			if got := unread(s, alice); got != 2 {
				t.Errorf("kick refused, %s: %d unread, want 2 (those after the receipt)", name, got)
			}
		}
	})
}
