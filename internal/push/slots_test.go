package push

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// TestCompactRowsExact is a differential test of the push_events rows that
// name the notified users by number (slots.go) against the rows that list
// their user IDs, as the rows of push schema version 5 did: over random
// sends into three rooms, with random joins and leaves, rule changes,
// receipts and threads, each row names exactly the users, actions and
// highlights its event's outcome had; and the counts and /notifications
// rebuilt at a restart from the rows as written, and from the same rows
// rewritten in the listed form, are the counts the service kept in memory.
func TestCompactRowsExact(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		testCompactRowsExact(t, dsn, rand.New(rand.NewPCG(16, uint64(len(dsn)))))
	})
}

func testCompactRowsExact(t *testing.T, dsn string, rng *rand.Rand) {
	ctx := context.Background()
	db := openDB(t, dsn)
	defer db.Close()
	fr := &fakeRooms{names: map[id.UserID]string{}, levels: map[id.UserID]int{}}
	s := loadService(t, db, nil, fr)
	var users []id.UserID
	for i := range 30 {
		u := id.UserID(fmt.Sprintf("@u%d:hs", i))
		if i%10 == 9 {
			u = id.UserID(fmt.Sprintf("@r%d:elsewhere", i))
		}
		users = append(users, u)
		fr.names[u] = words[rng.IntN(len(words))]
	}
	roomIDs := []id.RoomID{testRoom, "!two:hs", "!three:hs"}
	members := map[id.RoomID]map[id.UserID]string{}
	for _, r := range roomIDs {
		members[r] = map[id.UserID]string{}
		for _, u := range users {
			if rng.IntN(3) > 0 {
				members[r][u] = "join"
			}
		}
	}
	var sent []*rooms.Event
	compact := 0
	for i := range 300 {
		switch op := rng.IntN(10); {
		case op == 0:
			customize(t, s, users[rng.IntN(len(users))], rng)
			continue
		case op == 1 && len(sent) > 0:
			ev := sent[rng.IntN(len(sent))]
			thread := []string{"", "main", "$root"}[rng.IntN(3)]
			if err := s.MarkRead(ctx, users[rng.IntN(len(users))], ev.RoomID, thread, ev.Pos); err != nil {
				t.Fatal(err)
			}
			continue
		}
		roomID := roomIDs[rng.IntN(len(roomIDs))]
		ev := randomEvent(rng, users, i)
		ev.RoomID = roomID
		if rng.IntN(6) == 0 { // a join or a leave
			u := users[rng.IntN(len(users))]
			m := []string{"join", "leave"}[rng.IntN(2)]
			ev = mkEvent("m.room.member", u, ptr(string(u)), `{"membership":"`+m+`"}`)
			ev.ID, ev.RoomID = id.EventID(fmt.Sprintf("$ev%d", i)), roomID
		}
		if ev.Type == "m.room.member" {
			members[roomID][id.UserID(*ev.StateKey)] = ev.Membership()
		}
		info := &rooms.RoomInfo{ID: roomID, Members: maps.Clone(members[roomID])}
		info.Members[ev.Sender] = "join"
		info = withState(info, fr.names, ev)
		o := s.outcome(ctx, ev, info)
		if o == nil {
			continue
		}
		err := db.Write(ctx, func(tx *storage.Tx) error {
			ev.Pos = tx.NextPos()
			return s.record(ctx, tx, o, ev.Pos)
		})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, ev)
		if len(o.hits) == 0 {
			continue
		}
		want := map[id.UserID]string{}
		for _, h := range o.hits {
			want[h.user] = h.rule.actionsJSON
		}
		rec := readRecord(t, s, ev.Pos)
		if strings.HasPrefix(rec.notified, compactPrefix) {
			compact++
		}
		got := map[id.UserID]string{}
		err = rec.each(func(n int) (id.UserID, error) { return s.userOf(ctx, roomID, n) },
			func(u id.UserID, actions json.RawMessage, highlight bool) {
				got[u] = string(actions)
				if highlight != strings.Contains(string(actions), "highlight\"}") {
					t.Errorf("event %d: %s highlight %v with actions %s", i, u, highlight, actions)
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("event %d (%s, row %q): notified %v, want %v", i, ev.Type, rec.notified, got, want)
		}
		for _, u := range users {
			actions, _, ok, err := s.find(ctx, rec, u)
			if err != nil {
				t.Fatal(err)
			}
			if w, notified := want[u]; ok != notified || string(actions) != w {
				t.Fatalf("event %d: find %s = %s %v, want %s %v", i, u, actions, ok, w, notified)
			}
		}
	}
	if compact == 0 {
		t.Fatal("no row named its users by number")
	}
	kept := allCounts(t, s, users, roomIDs)
	if got := allCounts(t, loadService(t, db, nil, fr), users, roomIDs); !maps.EqualFunc(got, kept, slices.Equal) {
		t.Errorf("after a restart: counts %v, want %v", got, kept)
	}
	// The same rows in the listed form.
	var recs []*record
	if err := s.scanRecords(ctx, "ORDER BY pos", nil, func(rec *record) error { recs = append(recs, rec); return nil }); err != nil {
		t.Fatal(err)
	}
	err := db.Write(ctx, func(tx *storage.Tx) error {
		for _, rec := range recs {
			var listed strings.Builder
			lists, err := rec.actionLists()
			if err != nil {
				return err
			}
			err = rec.each(func(n int) (id.UserID, error) { return s.userOf(ctx, rec.roomID, n) },
				func(u id.UserID, actions json.RawMessage, _ bool) {
					i := slices.IndexFunc(lists, func(l actionList) bool { return string(l.raw) == string(actions) })
					listed.WriteString("\n" + string(u) + "\t" + strconv.Itoa(i))
				})
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE push_events SET notified = $1 WHERE pos = $2", listed.String(), rec.pos); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM push_room_users")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := allCounts(t, loadService(t, db, nil, fr), users, roomIDs); !maps.EqualFunc(got, kept, slices.Equal) {
		t.Errorf("from the rows in the listed form: counts %v, want %v", got, kept)
	}
}

// readRecord reads the push_events row at pos.
func readRecord(t *testing.T, s *Service, pos int64) *record {
	t.Helper()
	var out *record
	err := s.scanRecords(context.Background(), "WHERE pos = $1", []any{pos}, func(rec *record) error { out = rec; return nil })
	if err != nil || out == nil {
		t.Fatalf("row at %d: %v %v", pos, out, err)
	}
	return out
}

// allCounts returns, for each user and room, the user's counts in it (the
// main timeline's, then each thread's) and the positions of their
// notifications.
func allCounts(t *testing.T, s *Service, users []id.UserID, roomIDs []id.RoomID) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for _, u := range users {
		for _, r := range roomIDs {
			main, threads := s.Counts(u, r)
			c := []int64{int64(main.NotificationCount), int64(main.HighlightCount)}
			for _, th := range slices.Sorted(maps.Keys(threads)) {
				c = append(c, int64(len(th)), int64(threads[th].NotificationCount), int64(threads[th].HighlightCount))
			}
			if c != nil && (main != sync.Counts{} || len(threads) > 0) {
				out[string(u)+" "+string(r)] = c
			}
		}
		list, _, err := s.Notifications(context.Background(), u, 1<<62, 1000, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range list {
			hl := int64(0)
			if n.Highlight {
				hl = 1
			}
			out[string(u)+" notifications"] = append(out[string(u)+" notifications"], n.Pos, hl, int64(len(n.Actions)))
		}
	}
	return out
}
