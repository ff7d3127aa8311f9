//go:build goolm

package keys_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// decrypted reports whether d has decrypted the event.
func (d *e2eeDevice) decrypted(evID id.EventID) func() bool {
	return func() bool { _, ok := d.Plain(evID); return ok }
}

// TestEndToEndEncryptionAcrossServers: Alice on node A and Bob on node B
// share an encrypted room; each Olm machine finds the other's device keys
// and claims a one-time key through its own server (which asks the other),
// the Megolm keys travel as Olm to-device messages between the servers,
// and each decrypts the other's messages. Bob's cross-signing keys reach
// node A and Alice verifies him. When Bob adds a device, node A learns of
// it through an m.device_list_update and Alice's next message reaches
// that device too.
func TestEndToEndEncryptionAcrossServers(t *testing.T) {
	ctx := context.Background()
	a, b := federatingPair(t, testnode.SQLite)
	alice := newE2EEDevice(t, "alice", a.Register("alice"))
	bob := newE2EEDevice(t, "bob", b.Register("bob"))
	alice.Sync(0)
	bob.Sync(0)

	room, err := alice.C.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{bob.C.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
		}}},
	})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	bob.SyncUntil(syncWait, "the invite", func() bool { return bob.Member(room.RoomID, bob.C.UserID, event.MembershipInvite) })
	if _, err := bob.C.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins over federation: %v", err)
	}
	bob.SyncUntil(syncWait, "the join", func() bool { return bob.Member(room.RoomID, bob.C.UserID, event.MembershipJoin) })
	alice.SyncUntil(syncWait, "bob's join", func() bool { return alice.Member(room.RoomID, bob.C.UserID, event.MembershipJoin) })

	hello := alice.Send(room.RoomID, "hello bob")
	bob.SyncUntil(syncWait, "the message "+string(hello), bob.decrypted(hello))
	bob.wantPlain(hello, "hello bob")
	hi := bob.Send(room.RoomID, "hi alice")
	alice.SyncUntil(syncWait, "the message "+string(hi), alice.decrypted(hi))
	alice.wantPlain(hi, "hi alice")

	// Cross-signing set up once A tracks Bob's device list: Bob's keys
	// reach A as m.signing_key_update and m.device_list_update (his
	// device signed by his self-signing key), and Alice's signature of his
	// master key, kept on A, makes his device verified for her.
	alice.setupCrossSigning()
	bob.setupCrossSigning()
	eventually(t, "A has Bob's cross-signing keys", func() bool {
		if _, err := alice.Mach.FetchKeys(ctx, []id.UserID{bob.C.UserID}, true); err != nil {
			t.Fatal(err)
		}
		keys, err := alice.Mach.GetCrossSigningPublicKeys(ctx, bob.C.UserID)
		return err == nil && keys != nil && keys.MasterKey != ""
	})
	if err := alice.Mach.SignUser(ctx, bob.C.UserID, alice.masterKeyOf(bob.C.UserID)); err != nil {
		t.Fatalf("alice signs bob: %v", err)
	}
	eventually(t, "Alice trusts Bob's device", func() bool {
		return alice.trust(bob.C.UserID, bob.C.DeviceID) == id.TrustStateCrossSignedVerified
	})

	// Bob's second device: A hears of it and Alice's next message is
	// shared with it.
	bob2 := newE2EEDevice(t, "bob2", b.Login(bob.C.UserID))
	bob2.Sync(0)
	alice.SyncUntil(syncWait, "bob2's device keys", func() bool {
		devs, err := alice.Mach.CryptoStore.GetDevices(ctx, bob.C.UserID)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := devs[bob2.C.DeviceID]
		return ok
	})
	more := alice.Send(room.RoomID, "to both your devices")
	bob2.SyncUntil(syncWait, "the message "+string(more), bob2.decrypted(more))
	bob2.wantPlain(more, "to both your devices")
	bob.SyncUntil(syncWait, "the message "+string(more), bob.decrypted(more))
	bob.wantPlain(more, "to both your devices")
}

// eventually polls cond for up to ten seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within ten seconds", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
