package rooms

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// TestBuiltEventsSignedAndNamed checks that an event built here carries a
// signature that verifies and the event ID its reference hash gives (both
// made from one encoding of its signing form), and that a room's create
// event carries its ID once loaded again, so that the auth rules do not
// hash it again for each event they check.
func TestBuiltEventsSignedAndNamed(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV1, id.RoomV3, id.RoomV4, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			ctx := context.Background()
			env := newTestEnv(t)
			roomID, created := createTestRoom(t, env.e, v)
			msg, err := env.e.Send(ctx, roomID, textProto(alice, "hello"))
			if err != nil {
				t.Fatal(err)
			}
			pub := env.key.Public().(ed25519.PublicKey)
			getKey := func(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
				if server != "test" || keyID != "ed25519:t" {
					return "", time.Time{}, nil
				}
				return id.SigningKey(base64.RawStdEncoding.EncodeToString(pub)), time.Now().Add(time.Hour), nil
			}
			for _, ev := range append(created, msg) {
				if usesV1Format(v) {
					if ev.PDU.InternalMeta.EventID != "" {
						t.Errorf("%s: a v%s event carries %s, which GetEventID(v3) would return", ev.Type, v, ev.PDU.InternalMeta.EventID)
					}
					continue
				}
				fresh, err := parsePDU(ev.JSON)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := fresh.GetEventID(v); err != nil || got != ev.ID {
					t.Errorf("%s: reference hash %s (%v), event ID %s", ev.Type, got, err, ev.ID)
				}
				if err := fresh.VerifySignature(v, "test", getKey); err != nil {
					t.Errorf("%s: signature: %v", ev.Type, err)
				}
			}
			env.reopen()
			r, err := env.e.room(ctx, roomID)
			if err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			create := r.head.get("m.room.create", "")
			r.mu.Unlock()
			if create == nil {
				t.Fatal("no create event in the loaded room's state")
			}
			want := create.ID
			if usesV1Format(v) {
				want = ""
			}
			if got := create.PDU.InternalMeta.EventID; got != want {
				t.Errorf("loaded create event carries %q, want %q", got, want)
			}
		})
	}
}
