//go:build goolm

package keys_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// e2eeDevice is a testnode.E2EEDevice with the cross-signing steps these
// tests take.
type e2eeDevice struct {
	*testnode.E2EEDevice
	t    *testing.T
	name string
}

func newE2EEDevice(t *testing.T, name string, c *mautrix.Client) *e2eeDevice {
	t.Helper()
	return &e2eeDevice{E2EEDevice: testnode.NewE2EEDevice(t, name, c), t: t, name: name}
}

// syncWait bounds how long a test syncs waiting for something.
const syncWait = 10 * time.Second

// setupCrossSigning creates and uploads the cross-signing keys and signs
// the device and the master key with them.
func (d *e2eeDevice) setupCrossSigning() {
	d.t.Helper()
	ctx := context.Background()
	if _, _, err := d.Mach.GenerateAndUploadCrossSigningKeysWithPassword(ctx, testnode.Password, ""); err != nil {
		d.t.Fatalf("%s: cross-signing keys: %v", d.name, err)
	}
	if err := d.Mach.SignOwnDevice(ctx, d.Mach.OwnIdentity()); err != nil {
		d.t.Fatalf("%s: sign own device: %v", d.name, err)
	}
	if err := d.Mach.SignOwnMasterKey(ctx); err != nil {
		d.t.Fatalf("%s: sign own master key: %v", d.name, err)
	}
}

// masterKeyOf fetches user's master key as d sees it.
func (d *e2eeDevice) masterKeyOf(user id.UserID) id.Ed25519 {
	d.t.Helper()
	ctx := context.Background()
	if _, err := d.Mach.FetchKeys(ctx, []id.UserID{user}, true); err != nil {
		d.t.Fatalf("%s: fetch keys of %s: %v", d.name, user, err)
	}
	keys, err := d.Mach.GetCrossSigningPublicKeys(ctx, user)
	if err != nil || keys == nil {
		d.t.Fatalf("%s: cross-signing keys of %s: %v", d.name, user, err)
	}
	return keys.MasterKey
}

// trust returns how d trusts a device.
func (d *e2eeDevice) trust(user id.UserID, device id.DeviceID) id.TrustState {
	d.t.Helper()
	ctx := context.Background()
	if _, err := d.Mach.FetchKeys(ctx, []id.UserID{user}, true); err != nil {
		d.t.Fatal(err)
	}
	dev, err := d.Mach.GetOrFetchDevice(ctx, user, device)
	if err != nil {
		d.t.Fatalf("%s: device %s of %s: %v", d.name, device, user, err)
	}
	ts, err := d.Mach.ResolveTrustContext(ctx, dev)
	if err != nil {
		d.t.Fatal(err)
	}
	return ts
}

func (d *e2eeDevice) wantPlain(evID id.EventID, body string) {
	d.t.Helper()
	if got, ok := d.Plain(evID); !ok || got != body {
		d.t.Errorf("%s: event %s decrypted to %q (ok %v), want %q", d.name, evID, got, ok, body)
	}
}

func TestEndToEndEncryption(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice := newE2EEDevice(t, "alice", n.Register("alice"))
		bob := newE2EEDevice(t, "bob", n.Register("bob"))
		alice.Sync(0)
		bob.Sync(0)

		// Both set up cross-signing.
		alice.setupCrossSigning()
		bob.setupCrossSigning()

		// An encrypted room.
		room, err := alice.C.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "private_chat", Invite: []id.UserID{bob.C.UserID},
			InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
				Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
			}}},
		})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		bob.Sync(0)
		if _, err := bob.C.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatalf("join: %v", err)
		}
		alice.Sync(0)
		bob.Sync(0)

		// They verify each other: each signs the other's master key with
		// the user-signing key.
		if err := alice.Mach.SignUser(ctx, bob.C.UserID, alice.masterKeyOf(bob.C.UserID)); err != nil {
			t.Fatalf("alice signs bob: %v", err)
		}
		if err := bob.Mach.SignUser(ctx, alice.C.UserID, bob.masterKeyOf(alice.C.UserID)); err != nil {
			t.Fatalf("bob signs alice: %v", err)
		}
		alice.Sync(0)
		bob.Sync(0)
		if ts := alice.trust(bob.C.UserID, bob.C.DeviceID); ts != id.TrustStateCrossSignedVerified {
			t.Errorf("alice trusts bob's device as %s, want cross-signed verified", ts)
		}
		if ts := bob.trust(alice.C.UserID, alice.C.DeviceID); ts != id.TrustStateCrossSignedVerified {
			t.Errorf("bob trusts alice's device as %s, want cross-signed verified", ts)
		}

		// Megolm messages both ways.
		hello := alice.Send(room.RoomID, "hello bob")
		bob.Sync(0)
		bob.wantPlain(hello, "hello bob")
		hi := bob.Send(room.RoomID, "hi alice")
		alice.Sync(0)
		alice.wantPlain(hi, "hi alice")
		alice.wantPlain(hello, "hello bob") // her own message, from her outbound session
		more := alice.Send(room.RoomID, "second message")
		bob.Sync(0)
		bob.wantPlain(more, "second message")

		// Bob logs in on a second device: the history does not decrypt...
		bob2 := newE2EEDevice(t, "bob2", n.Login(bob.C.UserID))
		bob2.Sync(0)
		if len(bob2.Undecrypted()) < 3 {
			t.Fatalf("bob2 could decrypt old messages without keys: %d undecrypted", len(bob2.Undecrypted()))
		}
		// ... until Bob verifies it from his first device and it asks
		// for the keys.
		bob.Sync(0)
		dev2, err := bob.Mach.GetOrFetchDevice(ctx, bob.C.UserID, bob2.C.DeviceID)
		if err != nil {
			t.Fatalf("bob fetches bob2: %v", err)
		}
		if err := bob.Mach.SignOwnDevice(ctx, dev2); err != nil {
			t.Fatalf("bob signs bob2: %v", err)
		}
		for _, evt := range bob2.Undecrypted() {
			c := evt.Content.AsEncrypted()
			if err := bob2.Mach.SendRoomKeyRequest(ctx, evt.RoomID, c.SenderKey, c.SessionID, "", map[id.UserID][]id.DeviceID{bob.C.UserID: {"*"}}); err != nil {
				t.Fatalf("key request: %v", err)
			}
		}
		bob.Sync(0) // answers the requests with forwarded keys, in the background
		bob2.SyncUntil(syncWait, "forwarded room keys", func() bool { return len(bob2.Undecrypted()) == 0 })
		bob2.wantPlain(hello, "hello bob")
		bob2.wantPlain(hi, "hi alice")
		bob2.wantPlain(more, "second message")

		// Alice backs her room keys up; a new device of hers restores them.
		backupKey, err := backup.NewMegolmBackupKey()
		if err != nil {
			t.Fatal(err)
		}
		ver, err := alice.C.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
			Algorithm: id.KeyBackupAlgorithmMegolmBackupV1,
			AuthData:  backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(backupKey.PublicKey().Bytes()))},
		})
		if err != nil {
			t.Fatalf("create backup: %v", err)
		}
		req := &mautrix.ReqKeyBackup{Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{}}
		sessions := map[id.SessionID]mautrix.ReqKeyBackupData{}
		for _, evID := range []id.EventID{hello, hi, more} {
			evt, err := alice.C.GetEvent(ctx, room.RoomID, evID)
			if err != nil {
				t.Fatal(err)
			}
			if err := evt.Content.ParseRaw(event.EventEncrypted); err != nil {
				t.Fatal(err)
			}
			c := evt.Content.AsEncrypted()
			igs, err := alice.Mach.CryptoStore.GetGroupSession(ctx, room.RoomID, c.SessionID)
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
		up, err := alice.C.PutKeysInBackup(ctx, ver.Version, req)
		if err != nil {
			t.Fatalf("upload backup: %v", err)
		}
		if up.Count != len(sessions) {
			t.Errorf("backup count = %d, want %d", up.Count, len(sessions))
		}

		alice2 := newE2EEDevice(t, "alice2", n.Login(alice.C.UserID))
		alice2.Sync(0)
		if len(alice2.Undecrypted()) < 3 {
			t.Fatalf("alice2 decrypted history without keys")
		}
		if _, err := alice2.Mach.DownloadAndStoreLatestKeyBackup(ctx, backupKey); err != nil {
			t.Fatalf("restore backup: %v", err)
		}
		alice2.Retry()
		alice2.wantPlain(hello, "hello bob")
		alice2.wantPlain(hi, "hi alice")
		alice2.wantPlain(more, "second message")

		// New messages reach every device: Bob learns of Alice's new
		// device from the device lists in his sync.
		bob.Sync(0)
		last := bob.Send(room.RoomID, "to all of you")
		for _, d := range []*e2eeDevice{alice, alice2, bob2} {
			d.Sync(0)
			d.wantPlain(last, "to all of you")
		}
	})
}
