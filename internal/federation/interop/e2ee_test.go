//go:build goolm

package interop_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestDendriteE2EE runs the end-to-end encryption checks against one
// Dendrite and one Matrix OS node.
func TestDendriteE2EE(t *testing.T) {
	p := startPeers(t)
	t.Run("DeviceKeys", func(t *testing.T) { testDeviceKeys(t, p) })
	t.Run("EncryptedRooms", func(t *testing.T) { testEncryptedRooms(t, p) })
}

// testDeviceKeys: a Matrix OS user and a Dendrite user, each with
// an Olm device, fetch each other's device keys (/keys/query, which their
// servers forward over federation; mautrix checks the device's
// self-signature) and claim one of each other's one-time keys.
func testDeviceKeys(t *testing.T, p peers) {
	ctx := context.Background()
	alice := testnode.NewE2EEDevice(t, "alice on Matrix OS", p.n.Register("alice"))
	bob := testnode.NewE2EEDevice(t, "bob on Dendrite", p.d.Register("bob"))
	for _, tc := range []struct{ asker, of *testnode.E2EEDevice }{{alice, bob}, {bob, alice}} {
		user, device := tc.of.C.UserID, tc.of.C.DeviceID
		devices, err := tc.asker.Mach.FetchKeys(ctx, []id.UserID{user}, true)
		if err != nil {
			t.Fatalf("%s fetches the keys of %s: %v", tc.asker.C.UserID, user, err)
		}
		got, want := devices[user][device], tc.of.Mach.OwnIdentity()
		if got == nil || got.SigningKey != want.SigningKey || got.IdentityKey != want.IdentityKey {
			t.Errorf("%s sees device %s of %s as %+v; want keys %s, %s", tc.asker.C.UserID, device, user, got, want.SigningKey, want.IdentityKey)
		}

		claimed, err := tc.asker.C.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
			user: {device: id.KeyAlgorithmSignedCurve25519},
		}})
		if err != nil {
			t.Fatalf("%s claims a one-time key of %s: %v", tc.asker.C.UserID, user, err)
		}
		if keys := claimed.OneTimeKeys[user][device]; len(keys) != 1 {
			t.Errorf("%s claimed %d one-time keys of %s's %s, want 1 (failures %v)", tc.asker.C.UserID, len(keys), user, device, claimed.Failures)
		}
	}
}

// testEncryptedRooms: a Dendrite user joins a Matrix OS user's
// encrypted room and a Matrix OS user joins a Dendrite user's; in each,
// Megolm messages both ways decrypt on the other side (the room keys
// travel as Olm-encrypted to-device messages over federation).
func testEncryptedRooms(t *testing.T, p peers) {
	d, n := p.d, p.n
	t.Run("Dendrite user joins a Matrix OS room", func(t *testing.T) {
		encryptedChat(t, testnode.NewE2EEDevice(t, "owner on Matrix OS", n.Register("owner")),
			testnode.NewE2EEDevice(t, "joiner on Dendrite", d.Register("joiner")))
	})
	t.Run("Matrix OS user joins a Dendrite room", func(t *testing.T) {
		encryptedChat(t, testnode.NewE2EEDevice(t, "owner on Dendrite", d.Register("owner")),
			testnode.NewE2EEDevice(t, "joiner on Matrix OS", n.Register("joiner")))
	})
}

// encryptedChat has owner create a public encrypted room, joiner join it
// through owner's server, and each send a Megolm message the other
// decrypts.
func encryptedChat(t *testing.T, owner, joiner *testnode.E2EEDevice) {
	ctx := context.Background()
	room := testnode.CreateRoom(t, owner.C, &mautrix.ReqCreateRoom{
		Preset: "public_chat", RoomVersion: id.RoomV10,
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1},
		}}},
	})
	if _, err := joiner.C.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{owner.C.UserID.Homeserver()}}); err != nil {
		t.Fatalf("%s joins %s through %s: %v", joiner.C.UserID, room, owner.C.UserID.Homeserver(), err)
	}
	joined := func(d *testnode.E2EEDevice, users ...id.UserID) func() bool {
		return func() bool {
			for _, u := range users {
				if !d.Member(room, u, event.MembershipJoin) {
					return false
				}
			}
			return true
		}
	}
	owner.SyncUntil(federationWait, "join of "+joiner.C.UserID.String(), joined(owner, joiner.C.UserID))
	joiner.SyncUntil(federationWait, "joined room", joined(joiner, owner.C.UserID, joiner.C.UserID))
	for _, msg := range []struct{ from, to *testnode.E2EEDevice }{{owner, joiner}, {joiner, owner}} {
		body := "secret from " + msg.from.C.UserID.String()
		sent := msg.from.Send(room, body)
		msg.to.SyncUntil(federationWait, "decrypted message "+sent.String(), func() bool {
			_, ok := msg.to.Plain(sent)
			return ok
		})
		if got, _ := msg.to.Plain(sent); got != body {
			t.Fatalf("%s decrypted %s as %q, want %q", msg.to.C.UserID, sent, got, body)
		}
	}
}
