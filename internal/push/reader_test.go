package push

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// TestSendersMarkInTheRow: a send that notifies someone moves its
// sender's read mark through its push_events row (reader), not a
// push_read_marks row; the counts rebuilt at a restart move it as they
// read the row, in the event's thread or for the whole room as before.
func TestSendersMarkInTheRow(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, fr, s := openService(t, dsn)
		members := &rooms.RoomInfo{ID: testRoom, Members: map[id.UserID]string{alice: "join", bob: "join"}}
		send := func(sender id.UserID, evID, thread id.EventID) {
			ev := mkEvent("m.room.message", sender, nil, `{"msgtype":"m.text","body":"hi"}`)
			ev.ID, ev.Pos, ev.ThreadID = evID, db.Visible()+1, thread
			fr.events[evID] = ev
			s.OnEvent(ev, members)
		}
		send(bob, "$main1", "")
		send(bob, "$thread1", "$root")
		send(bob, "$main2", "")
		send(alice, "$reply", "$root") // reads the thread, not the room
		check := func(name string, s *Service, wantMain, wantThread, wantBob int) {
			t.Helper()
			main, threads := s.Counts(alice, testRoom)
			thread := 0
			if c := threads["$root"]; c != nil {
				thread = c.NotificationCount
			}
			bobMain, _ := s.Counts(bob, testRoom) // the main timeline: the reply counts in its thread
			if main.NotificationCount != wantMain || thread != wantThread || bobMain.NotificationCount != wantBob {
				t.Errorf("%s: alice %d unread in the room and %d in the thread, bob %d; want %d, %d and %d",
					name, main.NotificationCount, thread, bobMain.NotificationCount, wantMain, wantThread, wantBob)
			}
		}
		check("after a reply in the thread", s, 2, 0, 0)
		check("after a restart", loadService(t, db, nil, fr), 2, 0, 0)
		send(alice, "$answer", "") // reads the whole room
		check("after a message in the room", s, 0, 0, 1)
		check("after a restart", loadService(t, db, nil, fr), 0, 0, 1)
		var marks int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM push_read_marks WHERE user_id = $1", alice).Scan(&marks); err != nil {
			t.Fatal(err)
		}
		if marks != 0 {
			t.Errorf("%d read marks of alice's stored beside the rows that name her", marks)
		}
	})
}

// TestPruneKeepsReadersMark: a pruned row that named its sender as reader
// held the sender's read mark; the mark outlives the row. carol's message
// notifies alice and bob, bob's reply notifies carol only (alice has
// left) and reads the room for bob; carol reads it. Prune drops bob's
// row (read by all) and keeps carol's (alice has it unread): after a
// restart bob still has carol's message read.
func TestPruneKeepsReadersMark(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, fr, s := openService(t, dsn)
		const carol = id.UserID("@carol:hs")
		sendText(db, fr, s, "$carol", carol, map[id.UserID]string{alice: "join", bob: "join", carol: "join"})
		sendText(db, fr, s, "$bob", bob, map[id.UserID]string{bob: "join", carol: "join"})
		if err := s.MarkRead(ctx, carol, testRoom, "", db.Visible()); err != nil {
			t.Fatal(err)
		}
		if err := s.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM push_events").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Fatalf("%d rows after Prune, want carol's alone", rows)
		}
		for name, s := range map[string]*Service{"at once": s, "after a restart": loadService(t, db, nil, fr)} {
			if got := unread(s, bob); got != 0 {
				t.Errorf("%s: bob has %d unread, want 0 (his reply read carol's message)", name, got)
			}
		}
	})
}
