//go:build goolm

package keys_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// e2eeDevice is a logged-in client device with its own Olm machine (goolm,
// in-memory stores), driven by explicit syncs so that every exchange is
// deterministic.
type e2eeDevice struct {
	t     *testing.T
	name  string
	c     *mautrix.Client
	mach  *crypto.OlmMachine
	state mautrix.StateStore
	since string
	// plain holds the bodies of decrypted room messages, failed the
	// encrypted events that could not be decrypted (yet).
	plain  map[id.EventID]string
	failed map[id.EventID]*event.Event
}

func newE2EEDevice(t *testing.T, name string, c *mautrix.Client) *e2eeDevice {
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
	return &e2eeDevice{t: t, name: name, c: c, mach: mach, state: state,
		plain: map[id.EventID]string{}, failed: map[id.EventID]*event.Event{}}
}

// sync runs one /sync and feeds it to the state store and the Olm
// machine, then decrypts the room timeline.
func (d *e2eeDevice) sync() { d.syncWait(0) }

// syncUntil syncs (long-polling) until done reports true, for at most ten
// seconds.
func (d *e2eeDevice) syncUntil(done func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() && time.Now().Before(deadline) {
		d.syncWait(1000)
	}
}

func (d *e2eeDevice) syncWait(timeoutMS int) {
	d.t.Helper()
	ctx := context.Background()
	resp, err := d.c.SyncRequest(ctx, timeoutMS, d.since, "", false, "")
	if err != nil {
		d.t.Fatalf("%s: sync: %v", d.name, err)
	}
	var encrypted []*event.Event
	for roomID, jr := range resp.Rooms.Join {
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
				d.mach.HandleMemberEvent(ctx, evt)
			}
			if evt.Type == event.EventEncrypted {
				encrypted = append(encrypted, evt)
			}
		}
	}
	for roomID, ir := range resp.Rooms.Invite {
		for _, evt := range ir.State.Events {
			evt.RoomID = roomID
			evt.Type.Class = event.StateEventType
			if evt.Content.ParseRaw(evt.Type) == nil {
				mautrix.UpdateStateStore(ctx, d.state, evt)
			}
		}
	}
	d.mach.ProcessSyncResponse(ctx, resp, d.since)
	d.since = resp.NextBatch
	for _, evt := range encrypted {
		d.failed[evt.ID] = evt
	}
	d.retry()
}

// retry tries again to decrypt the events that failed.
func (d *e2eeDevice) retry() {
	for evID, evt := range d.failed {
		dec, err := d.mach.DecryptMegolmEvent(context.Background(), evt)
		if err != nil {
			continue
		}
		if dec.Content.Parsed == nil {
			dec.Content.ParseRaw(dec.Type)
		}
		if msg, ok := dec.Content.Parsed.(*event.MessageEventContent); ok {
			d.plain[evID] = msg.Body
		}
		delete(d.failed, evID)
	}
}

// send encrypts and sends a text message to the room.
func (d *e2eeDevice) send(roomID id.RoomID, text string) id.EventID {
	d.t.Helper()
	ctx := context.Background()
	members, err := d.state.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.mach.ShareGroupSession(ctx, roomID, members); err != nil {
		d.t.Fatalf("%s: share group session: %v", d.name, err)
	}
	content, err := d.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: text})
	if err != nil {
		d.t.Fatalf("%s: encrypt: %v", d.name, err)
	}
	resp, err := d.c.SendMessageEvent(ctx, roomID, event.EventEncrypted, content)
	if err != nil {
		d.t.Fatalf("%s: send: %v", d.name, err)
	}
	return resp.EventID
}

// setupCrossSigning creates and uploads the cross-signing keys and signs
// the device and the master key with them.
func (d *e2eeDevice) setupCrossSigning() {
	d.t.Helper()
	ctx := context.Background()
	if _, _, err := d.mach.GenerateAndUploadCrossSigningKeysWithPassword(ctx, testnode.Password, ""); err != nil {
		d.t.Fatalf("%s: cross-signing keys: %v", d.name, err)
	}
	if err := d.mach.SignOwnDevice(ctx, d.mach.OwnIdentity()); err != nil {
		d.t.Fatalf("%s: sign own device: %v", d.name, err)
	}
	if err := d.mach.SignOwnMasterKey(ctx); err != nil {
		d.t.Fatalf("%s: sign own master key: %v", d.name, err)
	}
}

// masterKeyOf fetches user's master key as d sees it.
func (d *e2eeDevice) masterKeyOf(user id.UserID) id.Ed25519 {
	d.t.Helper()
	ctx := context.Background()
	if _, err := d.mach.FetchKeys(ctx, []id.UserID{user}, true); err != nil {
		d.t.Fatalf("%s: fetch keys of %s: %v", d.name, user, err)
	}
	keys, err := d.mach.GetCrossSigningPublicKeys(ctx, user)
	if err != nil || keys == nil {
		d.t.Fatalf("%s: cross-signing keys of %s: %v", d.name, user, err)
	}
	return keys.MasterKey
}

// trust returns how d trusts a device.
func (d *e2eeDevice) trust(user id.UserID, device id.DeviceID) id.TrustState {
	d.t.Helper()
	ctx := context.Background()
	if _, err := d.mach.FetchKeys(ctx, []id.UserID{user}, true); err != nil {
		d.t.Fatal(err)
	}
	dev, err := d.mach.GetOrFetchDevice(ctx, user, device)
	if err != nil {
		d.t.Fatalf("%s: device %s of %s: %v", d.name, device, user, err)
	}
	ts, err := d.mach.ResolveTrustContext(ctx, dev)
	if err != nil {
		d.t.Fatal(err)
	}
	return ts
}

func (d *e2eeDevice) wantPlain(evID id.EventID, body string) {
	d.t.Helper()
	if got, ok := d.plain[evID]; !ok || got != body {
		d.t.Errorf("%s: event %s decrypted to %q (ok %v), want %q", d.name, evID, got, ok, body)
	}
}

func TestEndToEndEncryption(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := newE2EEDevice(t, "alice", n.Register("alice"))
		bob := newE2EEDevice(t, "bob", n.Register("bob"))
		alice.sync()
		bob.sync()

		// Both set up cross-signing.
		alice.setupCrossSigning()
		bob.setupCrossSigning()

		// An encrypted room.
		room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "private_chat", Invite: []id.UserID{bob.c.UserID},
			InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
				Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
			}}},
		})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		bob.sync()
		if _, err := bob.c.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatalf("join: %v", err)
		}
		alice.sync()
		bob.sync()

		// They verify each other: each signs the other's master key with
		// the user-signing key.
		if err := alice.mach.SignUser(ctx, bob.c.UserID, alice.masterKeyOf(bob.c.UserID)); err != nil {
			t.Fatalf("alice signs bob: %v", err)
		}
		if err := bob.mach.SignUser(ctx, alice.c.UserID, bob.masterKeyOf(alice.c.UserID)); err != nil {
			t.Fatalf("bob signs alice: %v", err)
		}
		alice.sync()
		bob.sync()
		if ts := alice.trust(bob.c.UserID, bob.c.DeviceID); ts != id.TrustStateCrossSignedVerified {
			t.Errorf("alice trusts bob's device as %s, want cross-signed verified", ts)
		}
		if ts := bob.trust(alice.c.UserID, alice.c.DeviceID); ts != id.TrustStateCrossSignedVerified {
			t.Errorf("bob trusts alice's device as %s, want cross-signed verified", ts)
		}

		// Megolm messages both ways.
		hello := alice.send(room.RoomID, "hello bob")
		bob.sync()
		bob.wantPlain(hello, "hello bob")
		hi := bob.send(room.RoomID, "hi alice")
		alice.sync()
		alice.wantPlain(hi, "hi alice")
		alice.wantPlain(hello, "hello bob") // her own message, from her outbound session
		more := alice.send(room.RoomID, "second message")
		bob.sync()
		bob.wantPlain(more, "second message")

		// Bob logs in on a second device: the history does not decrypt...
		bob2 := newE2EEDevice(t, "bob2", n.Login(bob.c.UserID))
		bob2.sync()
		if len(bob2.failed) < 3 {
			t.Fatalf("bob2 could decrypt old messages without keys: failed %d, plain %v", len(bob2.failed), bob2.plain)
		}
		// ... until Bob verifies it from his first device and it asks
		// for the keys.
		bob.sync()
		dev2, err := bob.mach.GetOrFetchDevice(ctx, bob.c.UserID, bob2.c.DeviceID)
		if err != nil {
			t.Fatalf("bob fetches bob2: %v", err)
		}
		if err := bob.mach.SignOwnDevice(ctx, dev2); err != nil {
			t.Fatalf("bob signs bob2: %v", err)
		}
		for _, evt := range bob2.failed {
			c := evt.Content.AsEncrypted()
			if err := bob2.mach.SendRoomKeyRequest(ctx, evt.RoomID, c.SenderKey, c.SessionID, "", map[id.UserID][]id.DeviceID{bob.c.UserID: {"*"}}); err != nil {
				t.Fatalf("key request: %v", err)
			}
		}
		bob.sync() // answers the requests with forwarded keys, in the background
		bob2.syncUntil(func() bool { return len(bob2.failed) == 0 })
		bob2.wantPlain(hello, "hello bob")
		bob2.wantPlain(hi, "hi alice")
		bob2.wantPlain(more, "second message")

		// Alice backs her room keys up; a new device of hers restores them.
		backupKey, err := backup.NewMegolmBackupKey()
		if err != nil {
			t.Fatal(err)
		}
		ver, err := alice.c.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
			Algorithm: id.KeyBackupAlgorithmMegolmBackupV1,
			AuthData:  backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(backupKey.PublicKey().Bytes()))},
		})
		if err != nil {
			t.Fatalf("create backup: %v", err)
		}
		req := &mautrix.ReqKeyBackup{Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{}}
		sessions := map[id.SessionID]mautrix.ReqKeyBackupData{}
		for _, evID := range []id.EventID{hello, hi, more} {
			evt, err := alice.c.GetEvent(ctx, room.RoomID, evID)
			if err != nil {
				t.Fatal(err)
			}
			if err := evt.Content.ParseRaw(event.EventEncrypted); err != nil {
				t.Fatal(err)
			}
			c := evt.Content.AsEncrypted()
			igs, err := alice.mach.CryptoStore.GetGroupSession(ctx, room.RoomID, c.SessionID)
			if err != nil || igs == nil {
				t.Fatalf("alice has no session %s: %v", c.SessionID, err)
			}
			first := igs.Internal.FirstKnownIndex()
			exported, err := igs.Internal.Export(first)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := backup.EncryptSessionData(backupKey, backup.MegolmSessionData{
				Algorithm: id.AlgorithmMegolmV1, SenderKey: igs.SenderKey, SessionKey: string(exported),
				SenderClaimedKeys: backup.SenderClaimedKeys{Ed25519: igs.SigningKey}, ForwardingKeyChain: []string{},
			})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(enc)
			sessions[c.SessionID] = mautrix.ReqKeyBackupData{FirstMessageIndex: int(first), IsVerified: true, SessionData: raw}
		}
		req.Rooms[room.RoomID] = mautrix.ReqRoomKeyBackup{Sessions: sessions}
		up, err := alice.c.PutKeysInBackup(ctx, ver.Version, req)
		if err != nil {
			t.Fatalf("upload backup: %v", err)
		}
		if up.Count != len(sessions) {
			t.Errorf("backup count = %d, want %d", up.Count, len(sessions))
		}

		alice2 := newE2EEDevice(t, "alice2", n.Login(alice.c.UserID))
		alice2.sync()
		if len(alice2.failed) < 3 {
			t.Fatalf("alice2 decrypted history without keys")
		}
		if _, err := alice2.mach.DownloadAndStoreLatestKeyBackup(ctx, backupKey); err != nil {
			t.Fatalf("restore backup: %v", err)
		}
		alice2.retry()
		alice2.wantPlain(hello, "hello bob")
		alice2.wantPlain(hi, "hi alice")
		alice2.wantPlain(more, "second message")

		// New messages reach every device: Bob learns of Alice's new
		// device from the device lists in his sync.
		bob.sync()
		last := bob.send(room.RoomID, "to all of you")
		for _, d := range []*e2eeDevice{alice, alice2, bob2} {
			d.sync()
			d.wantPlain(last, "to all of you")
		}
	})
}
