package push

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// TestDeactivatedCountsStayGone: a deactivated user's counts are gone, and
// stay gone when they are rebuilt from the rows at a restart; what notifies
// the user after it (a reactivated account) counts again.
func TestDeactivatedCountsStayGone(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, fr, s := openService(t, dsn)
		members := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "join", bob: "join"}}
		send := func(evID id.EventID) {
			ev := mkEvent("m.room.message", bob, nil, `{"msgtype":"m.text","body":"hi"}`)
			ev.ID, ev.Pos = evID, db.Visible()+1
			fr.events[evID] = ev
			s.OnEvent(ev, members)
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
		if got := counts(s); got != 2 {
			t.Fatalf("before deactivation: %d unread, want 2", got)
		}

		s.OnDeactivated(ctx, alice)
		for name, s := range map[string]*Service{"at once": s, "after a restart": loadService(t, db, nil, fr)} {
			if got := counts(s); got != 0 {
				t.Errorf("deactivated, %s: %d unread, want 0", name, got)
			}
		}

		// Reactivated: new notifications count, the old ones do not.
		send("$d")
		for name, s := range map[string]*Service{"at once": s, "after a restart": loadService(t, db, nil, fr)} {
			if got := counts(s); got != 1 {
				t.Errorf("reactivated, %s: %d unread, want 1", name, got)
			}
			// /notifications lists what counts: the new one, not those
			// from before the deactivation.
			notes, _, err := s.Notifications(ctx, alice, db.Visible()+1, 10, false)
			if err != nil {
				t.Fatal(err)
			}
			var listed []id.EventID
			for _, n := range notes {
				listed = append(listed, n.EventID)
			}
			if len(listed) != 1 || listed[0] != "$d" {
				t.Errorf("reactivated, %s: /notifications lists %v, want [$d]", name, listed)
			}
		}
	})
}
