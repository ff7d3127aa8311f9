package push

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// TestConvertLegacyUnread checks that the unread rows schema version 2
// kept per user become push_events rows at start-up: the counts and
// highlights are those the old rows gave, read rows stay read, a row whose
// event is gone is dropped, and push_unread is left empty.
func TestConvertLegacyUnread(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := openRoomsDB(t, dsn)
		defer db.Close()
		// Event IDs without "$": the statements are literal SQL, where the
		// storage layer reads $ as a placeholder.
		err := db.Write(ctx, func(tx *storage.Tx) error {
			for _, q := range []string{
				`INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_ts, json, snapshot_before)
				VALUES (10, 'ev-a', '!room:hs', 'm.room.message', '@bob:hs', 3, 1000, '{}', 0)`,
				`INSERT INTO events (pos, event_id, room_id, type, sender, depth, origin_ts, json, snapshot_before)
				VALUES (11, 'ev-b', '!room:hs', 'm.room.message', '@bob:hs', 4, 1001, '{}', 0)`,
				`INSERT INTO push_unread (user_id, pos, room_id, thread_id, highlight) VALUES ('@alice:hs', 10, '!room:hs', '', FALSE)`,
				`INSERT INTO push_unread (user_id, pos, room_id, thread_id, highlight) VALUES ('@alice:hs', 11, '!room:hs', '', TRUE)`,
				`INSERT INTO push_unread (user_id, pos, room_id, thread_id, highlight) VALUES ('@carol:hs', 11, '!room:hs', '', FALSE)`,
				`INSERT INTO push_unread (user_id, pos, room_id, thread_id, highlight) VALUES ('@dave:hs', 10, '!room:hs', '', FALSE)`,
				`INSERT INTO push_unread (user_id, pos, room_id, thread_id, highlight) VALUES ('@alice:hs', 12, '!room:hs', '', FALSE)`,
				`INSERT INTO push_read_marks (user_id, room_id, scope, pos) VALUES ('@dave:hs', '!room:hs', '*', 10)`,
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s := loadService(t, db, nil, &fakeRooms{})
		for user, want := range map[id.UserID]sync.Counts{
			alice:       {NotificationCount: 2, HighlightCount: 1},
			"@carol:hs": {NotificationCount: 1},
			"@dave:hs":  {},
		} {
			if got, _ := s.Counts(user, testRoom); got != want {
				t.Errorf("counts of %s = %+v, want %+v", user, got, want)
			}
		}
		list, _, err := s.Notifications(ctx, alice, 1<<62, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		var ids []id.EventID
		for _, n := range list {
			ids = append(ids, n.EventID)
		}
		if !slices.Equal(ids, []id.EventID{"ev-b", "ev-a"}) || !list[0].Highlight || list[1].Highlight {
			t.Errorf("alice's notifications = %+v, want ev-b (highlight) and ev-a", list)
		}
		var left int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM push_unread").Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("%d rows left in push_unread", left)
		}
		// A second start finds nothing to convert and the same counts.
		s = loadService(t, db, nil, &fakeRooms{})
		if got, _ := s.Counts(alice, testRoom); got != (sync.Counts{NotificationCount: 2, HighlightCount: 1}) {
			t.Errorf("counts of alice after a second start = %+v", got)
		}
	})
}

// TestNotificationsScanBounded: a look for a user's notifications reads at
// most notificationsScan rows of everyone's, however many there are: among
// 10,000 rows for another user, a user with none gets an empty page that
// stops where its scan did, and a look below that goes on from there.
func TestNotificationsScanBounded(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db := openDB(t, dsn)
		defer db.Close()
		const rows = 10_000
		err := db.Write(ctx, func(tx *storage.Tx) error {
			for pos := 1; pos <= rows; pos++ {
				if _, err := tx.Exec(ctx, `INSERT INTO push_events (pos, room_id, event_id, thread_id, ts, actions, notified)
					VALUES ($1, '!room:hs', $2, '', 1, '[["notify"]]', $3)`, pos, fmt.Sprintf("$e%d", pos), "\n@carol:hs\t0"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s := loadService(t, db, nil, &fakeRooms{})
		list, scannedTo, err := s.Notifications(ctx, alice, 1<<62, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(rows - notificationsScan + 1); len(list) != 0 || scannedTo != want {
			t.Fatalf("alice's first look: %d notifications, stopped at %d; want none, stopped at %d (%d rows read)", len(list), scannedTo, want, notificationsScan)
		}
		list, _, err = s.Notifications(ctx, "@carol:hs", scannedTo, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 10 || list[0].Pos != scannedTo-1 {
			t.Fatalf("carol's look below %d: %+v", scannedTo, list)
		}
	})
}
