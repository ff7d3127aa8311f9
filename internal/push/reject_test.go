package push

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
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
		joined := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "join", bob: "join"}}
		send := func(evID id.EventID) {
			ev := mkEvent("m.room.message", bob, nil, `{"msgtype":"m.text","body":"hi"}`)
			ev.ID, ev.Pos = evID, db.Visible()+1
			fr.events[evID] = ev
			s.OnEvent(ev, joined)
		}
		counts := func(s *Service) int {
			main, _ := s.Counts(alice, testRoom)
			return main.NotificationCount
		}
		send("$a")
		if err := s.MarkRead(ctx, alice, testRoom, "", db.Visible()); err != nil {
			t.Fatal(err)
		}
		send("$b")
		send("$c")
		kick := mkEvent("m.room.member", bob, ptr(string(alice)), `{"membership":"leave"}`)
		kick.ID, kick.Pos = "$kick", db.Visible()+1
		fr.events[kick.ID] = kick
		s.OnEvent(kick, &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "leave", bob: "join"}})
		if got := counts(s); got != 0 {
			t.Fatalf("kicked: %d unread, want 0", got)
		}
		if err := db.Write(ctx, func(tx *storage.Tx) error { return s.OnReject(ctx, tx, kick) }); err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*Service{"at once": s, "after a restart": loadService(t, db, nil, fr)} {
			if got := counts(s); got != 2 {
				t.Errorf("kick refused, %s: %d unread, want 2 (those after the receipt)", name, got)
			}
		}
	})
}
