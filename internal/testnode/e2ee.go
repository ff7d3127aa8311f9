//go:build goolm

package testnode

import (
	"context"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// E2EEDevice is a logged-in client device with its own Olm machine
// (goolm, in-memory stores), driven by explicit syncs so that every
// exchange is deterministic. It works against any homeserver.
type E2EEDevice struct {
	C    *mautrix.Client
	Mach *crypto.OlmMachine

	t     testing.TB
	name  string
	state mautrix.StateStore
	since string
	// plain holds the bodies of decrypted room messages, failed the
	// encrypted events that could not be decrypted (yet).
	plain  map[id.EventID]string
	failed map[id.EventID]*event.Event
	// decrypted holds the decrypted room messages in the order they were
	// decrypted; invited the rooms the user is invited to.
	decrypted []*event.Event
	invited   map[id.RoomID]bool
}

// NewE2EEDevice gives c an Olm machine and uploads its device keys and
// one-time keys; the test fails on an error.
func NewE2EEDevice(t testing.TB, name string, c *mautrix.Client) *E2EEDevice {
	t.Helper()
	ctx := context.Background()
	log := zerolog.Nop()
	if os.Getenv("MATRIXOS_TEST_LOG") != "" {
		log = zerolog.New(zerolog.NewConsoleWriter()).With().Str("device", name).Logger().Level(zerolog.DebugLevel)
	}
	state := mautrix.NewMemoryStateStore()
	c.StateStore = state
	mach := crypto.NewOlmMachine(c, &log, crypto.NewMemoryStore(nil), state.(crypto.StateStore))
	if err := mach.Load(ctx); err != nil {
		t.Fatalf("%s: load olm machine: %v", name, err)
	}
	if err := mach.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("%s: upload device keys: %v", name, err)
	}
	return &E2EEDevice{C: c, Mach: mach, t: t, name: name, state: state,
		plain: map[id.EventID]string{}, failed: map[id.EventID]*event.Event{}, invited: map[id.RoomID]bool{}}
}

// Sync runs one /sync (waiting up to timeoutMS for news), feeds it (the
// stripped state of invites too) to the state store and the Olm machine,
// then decrypts what it can.
func (d *E2EEDevice) Sync(timeoutMS int) {
	d.t.Helper()
	ctx := context.Background()
	resp, err := d.C.SyncRequest(ctx, timeoutMS, d.since, "", false, "")
	if err != nil {
		d.t.Fatalf("%s: sync: %v", d.name, err)
	}
	for roomID, jr := range resp.Rooms.Join {
		delete(d.invited, roomID)
		for _, evt := range append(jr.State.Events, jr.Timeline.Events...) {
			evt.RoomID = roomID
			if evt.StateKey != nil {
				evt.Type.Class = event.StateEventType
			} else {
				evt.Type.Class = event.MessageEventType
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			mautrix.UpdateStateStore(ctx, d.state, evt)
			if evt.Type == event.StateMember {
				d.Mach.HandleMemberEvent(ctx, evt)
			}
			if evt.Type == event.EventEncrypted {
				d.failed[evt.ID] = evt
			}
		}
	}
	for roomID, ir := range resp.Rooms.Invite {
		d.invited[roomID] = true
		for _, evt := range ir.State.Events {
			evt.RoomID = roomID
			evt.Type.Class = event.StateEventType
			if evt.Content.ParseRaw(evt.Type) == nil {
				mautrix.UpdateStateStore(ctx, d.state, evt)
			}
		}
	}
	d.Mach.ProcessSyncResponse(ctx, resp, d.since)
	d.since = resp.NextBatch
	d.Retry()
}

// SyncUntil syncs (long-polling) until done reports true; the test fails
// after timeout.
func (d *E2EEDevice) SyncUntil(timeout time.Duration, what string, done func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: no %s within %v", d.name, what, timeout)
		}
		d.Sync(1000)
	}
}

// Retry tries again to decrypt the events that failed (Sync does after
// each sync), as after the keys were restored from a backup.
func (d *E2EEDevice) Retry() {
	for evID, evt := range d.failed {
		dec, err := d.Mach.DecryptMegolmEvent(context.Background(), evt)
		if err != nil {
			continue
		}
		if dec.Content.Parsed == nil {
			dec.Content.ParseRaw(dec.Type)
		}
		if msg, ok := dec.Content.Parsed.(*event.MessageEventContent); ok {
			d.plain[evID] = msg.Body
			d.decrypted = append(d.decrypted, dec)
		}
		delete(d.failed, evID)
	}
}

// Plain returns the decrypted body of an encrypted message the device has
// synced.
func (d *E2EEDevice) Plain(evID id.EventID) (string, bool) {
	body, ok := d.plain[evID]
	return body, ok
}

// Send shares the room's Megolm session with its members (as the state
// store knows them), encrypts a text message and sends it.
func (d *E2EEDevice) Send(roomID id.RoomID, text string) id.EventID {
	d.t.Helper()
	return d.SendContent(roomID, &event.MessageEventContent{MsgType: event.MsgText, Body: text})
}

// SendContent is Send with any message content (mentions, a thread).
func (d *E2EEDevice) SendContent(roomID id.RoomID, msg *event.MessageEventContent) id.EventID {
	d.t.Helper()
	ctx := context.Background()
	members, err := d.state.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.Mach.ShareGroupSession(ctx, roomID, members); err != nil {
		d.t.Fatalf("%s: share group session: %v", d.name, err)
	}
	content, err := d.Mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, msg)
	if err != nil {
		d.t.Fatalf("%s: encrypt: %v", d.name, err)
	}
	resp, err := d.C.SendMessageEvent(ctx, roomID, event.EventEncrypted, content)
	if err != nil {
		d.t.Fatalf("%s: send: %v", d.name, err)
	}
	return resp.EventID
}

// Member reports whether the device's synced state has the user in the
// room with the membership.
func (d *E2EEDevice) Member(room id.RoomID, user id.UserID, membership event.Membership) bool {
	return d.state.IsMembership(context.Background(), room, user, membership)
}

// Undecrypted returns the encrypted messages the device has synced and
// could not decrypt (yet).
func (d *E2EEDevice) Undecrypted() []*event.Event {
	return slices.Collect(maps.Values(d.failed))
}

// Decrypted returns the room messages the device has decrypted, in the
// order it decrypted them, each with its room, sender and event ID.
func (d *E2EEDevice) Decrypted() []*event.Event {
	return slices.Clone(d.decrypted)
}

// Invited returns the rooms the user was invited to and has not joined,
// as the device has synced.
func (d *E2EEDevice) Invited() []id.RoomID {
	return slices.Collect(maps.Keys(d.invited))
}
