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

// member reports whether d's state store has user with the membership in
// the room.
func (d *e2eeDevice) member(roomID id.RoomID, user id.UserID, membership event.Membership) bool {
	m, err := d.state.GetMember(context.Background(), roomID, user)
	return err == nil && m != nil && m.Membership == membership
}

// decrypted reports whether d has decrypted the event.
func (d *e2eeDevice) decrypted(evID id.EventID) func() bool {
	return func() bool { _, ok := d.plain[evID]; return ok }
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
	alice.sync()
	bob.sync()

	room, err := alice.c.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{bob.c.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
		}}},
	})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	bob.syncUntil(func() bool { return bob.member(room.RoomID, bob.c.UserID, event.MembershipInvite) })
	if _, err := bob.c.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("bob joins over federation: %v", err)
	}
	bob.syncUntil(func() bool { return bob.member(room.RoomID, bob.c.UserID, event.MembershipJoin) })
	alice.syncUntil(func() bool { return alice.member(room.RoomID, bob.c.UserID, event.MembershipJoin) })

	hello := alice.send(room.RoomID, "hello bob")
	bob.syncUntil(bob.decrypted(hello))
	bob.wantPlain(hello, "hello bob")
	hi := bob.send(room.RoomID, "hi alice")
	alice.syncUntil(alice.decrypted(hi))
	alice.wantPlain(hi, "hi alice")

	// Cross-signing set up once A tracks Bob's device list: Bob's keys
	// reach A as m.signing_key_update and m.device_list_update (his
	// device signed by his self-signing key), and Alice's signature of his
	// master key, kept on A, makes his device verified for her.
	alice.setupCrossSigning()
	bob.setupCrossSigning()
	eventually(t, "A has Bob's cross-signing keys", func() bool {
		if _, err := alice.mach.FetchKeys(ctx, []id.UserID{bob.c.UserID}, true); err != nil {
			t.Fatal(err)
		}
		keys, err := alice.mach.GetCrossSigningPublicKeys(ctx, bob.c.UserID)
		return err == nil && keys != nil && keys.MasterKey != ""
	})
	if err := alice.mach.SignUser(ctx, bob.c.UserID, alice.masterKeyOf(bob.c.UserID)); err != nil {
		t.Fatalf("alice signs bob: %v", err)
	}
	eventually(t, "Alice trusts Bob's device", func() bool {
		return alice.trust(bob.c.UserID, bob.c.DeviceID) == id.TrustStateCrossSignedVerified
	})

	// Bob's second device: A hears of it and Alice's next message is
	// shared with it.
	bob2 := newE2EEDevice(t, "bob2", b.Login(bob.c.UserID))
	bob2.sync()
	alice.syncUntil(func() bool {
		devs, err := alice.mach.CryptoStore.GetDevices(ctx, bob.c.UserID)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := devs[bob2.c.DeviceID]
		return ok
	})
	more := alice.send(room.RoomID, "to both your devices")
	bob2.syncUntil(bob2.decrypted(more))
	bob2.wantPlain(more, "to both your devices")
	bob.syncUntil(bob.decrypted(more))
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
