package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// TestOnEventWakesOnlyForLedgerRooms: an event wakes the follower only
// when its room has the ledger on, as the follower last read it or in the
// room's state right after the event, or with All; an event of any other
// room asks for no round.
func TestOnEventWakesOnlyForLedgerRooms(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO ledger_rooms (room_id, enabled) VALUES ('!on:test', TRUE), ('!off:test', FALSE)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(all bool) *Log {
		l, err := Open(ctx, db, log, Options{Dir: filepath.Join(t.TempDir(), "ledger"), Origin: EventsOrigin("test"), Key: key, All: all})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(ctx) })
		return l
	}
	sk := ""
	toggle := func(room id.RoomID, content string) *rooms.Event {
		return &rooms.Event{ID: id.EventID("$toggle" + room), RoomID: room, Type: StateType, StateKey: &sk,
			JSON: []byte(`{"content":` + content + `}`)}
	}
	info := func(room id.RoomID, state ...*rooms.Event) *rooms.RoomInfo {
		return rooms.InfoWithState(room, "10", state)
	}
	msg := func(room id.RoomID) *rooms.Event {
		return &rooms.Event{ID: "$m", RoomID: room, Type: "m.room.message", Pos: 7}
	}

	l := open(false)
	l.OnEvent(msg("!other:test"), info("!other:test"))
	if got := l.follower.Woken(); got != 1 {
		t.Fatalf("before the rooms are read: %d wake-ups, want 1", got)
	}
	if _, err := l.enabled.Get(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ev   *rooms.Event
		info *rooms.RoomInfo
		wake bool
	}{
		{"room without the ledger", msg("!other:test"), info("!other:test"), false},
		{"room with the ledger off", msg("!off:test"), info("!off:test", toggle("!off:test", `{"enabled":false}`)), false},
		{"backfilled event", &rooms.Event{RoomID: "!on:test", Pos: -3}, info("!on:test"), false},
		{"room with the ledger on", msg("!on:test"), info("!on:test"), true},
		{"room whose state turns it on", msg("!new:test"), info("!new:test", toggle("!new:test", `{"enabled":true}`)), true},
		{"info without state", msg("!other:test"), &rooms.RoomInfo{ID: "!other:test"}, true},
	} {
		before := l.follower.Woken()
		l.OnEvent(tc.ev, tc.info)
		if woke := l.follower.Woken() > before; woke != tc.wake {
			t.Errorf("%s: woke %v, want %v", tc.name, woke, tc.wake)
		}
	}

	all := open(true)
	all.OnEvent(msg("!other:test"), info("!other:test"))
	if got := all.follower.Woken(); got != 1 {
		t.Errorf("with All: %d wake-ups, want 1", got)
	}
}
