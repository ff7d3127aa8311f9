//go:build goolm

package interop_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestDendriteE2EE runs the end-to-end encryption checks against one
// Dendrite and one Matrix OS node.
func TestDendriteE2EE(t *testing.T) {
	p := startPeers(t)
	t.Run("DeviceKeys", func(t *testing.T) { testDeviceKeys(t, p) })
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
