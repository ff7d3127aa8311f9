package keys_test

import (
	"net/http"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestCrossSigning(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
		dev := newFakeDevice(t, alice)
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": dev.deviceKeys(t)}).OK(t)

		master, ssk, usk := newKeyPair(t), newKeyPair(t), newKeyPair(t)
		mk := crossSigningKey(alice.UserID, "master", master)
		sk := master.sign(t, crossSigningKey(alice.UserID, "self_signing", ssk), alice.UserID, "ed25519:"+master.pub)
		uk := master.sign(t, crossSigningKey(alice.UserID, "user_signing", usk), alice.UserID, "ed25519:"+master.pub)

		// A self-signing key not signed by the master key is refused.
		badSSK := newKeyPair(t).sign(t, crossSigningKey(alice.UserID, "self_signing", ssk), alice.UserID, "ed25519:"+master.pub)
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", map[string]any{"master_key": mk, "self_signing_key": badSSK}).Want(t, http.StatusBadRequest, "M_INVALID_SIGNATURE")
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", map[string]any{"self_signing_key": sk}).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", map[string]any{"master_key": crossSigningKey(bob.UserID, "master", master)}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

		// The first upload needs no UIA, nor does repeating it.
		up := map[string]any{"master_key": mk, "self_signing_key": sk, "user_signing_key": uk}
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", up).OK(t)
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", up).OK(t)

		// Replacing keys needs the password.
		master2 := newKeyPair(t)
		up2 := map[string]any{"master_key": crossSigningKey(alice.UserID, "master", master2)}
		uia := testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", up2).Want(t, http.StatusUnauthorized, "").JSON(t)
		if uia["session"] == nil || uia["flows"] == nil {
			t.Fatalf("no UIA challenge: %v", uia)
		}

		// Query: Bob sees master and self-signing keys, not the user-signing one.
		q := testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
		if get(q, "master_keys", string(alice.UserID), "keys", "ed25519:"+master.pub) != master.pub {
			t.Fatalf("master key missing: %v", q)
		}
		if get(q, "self_signing_keys", string(alice.UserID)) == nil {
			t.Errorf("self-signing key missing: %v", q)
		}
		if get(q, "user_signing_keys", string(alice.UserID)) != nil {
			t.Errorf("Bob sees Alice's user-signing key")
		}
		q = testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
		if get(q, "user_signing_keys", string(alice.UserID)) == nil {
			t.Errorf("Alice does not see her own user-signing key: %v", q)
		}

		// The self-signing key signs Alice's device.
		devObj := dev.deviceKeys(t)
		ssk.sign(t, devObj, alice.UserID, "ed25519:"+ssk.pub)
		res := testnode.Call(t, alice, "POST", v3+"/keys/signatures/upload", map[string]any{
			string(alice.UserID): map[string]any{string(alice.DeviceID): devObj},
		}).OK(t)
		if f, _ := res["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("failures: %v", f)
		}
		q = testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
		if get(q, "device_keys", string(alice.UserID), string(alice.DeviceID), "signatures", string(alice.UserID), "ed25519:"+ssk.pub) == nil {
			t.Errorf("device signature not returned: %v", q)
		}

		// A bad signature, a mismatching object and an unknown key fail per key.
		forged := dev.deviceKeys(t)
		newKeyPair(t).sign(t, forged, alice.UserID, "ed25519:"+ssk.pub)
		changed := dev.deviceKeys(t)
		changed["algorithms"] = []string{"x"}
		ssk.sign(t, changed, alice.UserID, "ed25519:"+ssk.pub)
		res = testnode.Call(t, alice, "POST", v3+"/keys/signatures/upload", map[string]any{
			string(alice.UserID): map[string]any{string(alice.DeviceID): forged, "NOSUCHKEY": changed},
		}).OK(t)
		if get(res, "failures", string(alice.UserID), string(alice.DeviceID), "errcode") != "M_INVALID_SIGNATURE" {
			t.Errorf("forged signature not reported: %v", res)
		}
		if get(res, "failures", string(alice.UserID), "NOSUCHKEY", "errcode") == nil {
			t.Errorf("unknown key not reported: %v", res)
		}

		// Alice signs Bob's master key with her user-signing key: only
		// Alice sees that signature.
		bobMaster := newKeyPair(t)
		testnode.Call(t, bob, "POST", v3+"/keys/device_signing/upload", map[string]any{"master_key": crossSigningKey(bob.UserID, "master", bobMaster)}).OK(t)
		signed := usk.sign(t, crossSigningKey(bob.UserID, "master", bobMaster), alice.UserID, "ed25519:"+usk.pub)
		res = testnode.Call(t, alice, "POST", v3+"/keys/signatures/upload", map[string]any{string(bob.UserID): map[string]any{bobMaster.pub: signed}}).OK(t)
		if f, _ := res["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("failures: %v", f)
		}
		sigPath := []string{"master_keys", string(bob.UserID), "signatures", string(alice.UserID), "ed25519:" + usk.pub}
		q = testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
		if get(q, sigPath...) == nil {
			t.Errorf("Alice does not see her signature on Bob's master key: %v", q)
		}
		q = testnode.Call(t, carol, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
		if get(q, sigPath...) != nil {
			t.Errorf("Carol sees Alice's signature on Bob's master key")
		}
		// Signing Bob's master key with the self-signing key is refused.
		wrong := ssk.sign(t, crossSigningKey(bob.UserID, "master", bobMaster), alice.UserID, "ed25519:"+ssk.pub)
		res = testnode.Call(t, alice, "POST", v3+"/keys/signatures/upload", map[string]any{string(bob.UserID): map[string]any{bobMaster.pub: wrong}}).OK(t)
		if get(res, "failures", string(bob.UserID), bobMaster.pub, "errcode") != "M_INVALID_SIGNATURE" {
			t.Errorf("signature by the wrong key not reported: %v", res)
		}

		// With the password, Alice replaces her master key.
		up2["auth"] = map[string]any{
			"type": "m.login.password", "session": uia["session"], "password": testnode.Password,
			"identifier": map[string]any{"type": "m.id.user", "user": string(alice.UserID)},
		}
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", up2).OK(t)
		q = testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
		if get(q, "master_keys", string(alice.UserID), "keys", "ed25519:"+master2.pub) != master2.pub {
			t.Errorf("master key not replaced: %v", q)
		}
	})
}
