package keys_test

import (
	"net/http"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestUploadQueryClaim(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		dev := newFakeDevice(t, alice)
		dk := dev.deviceKeys(t)
		otks := map[string]any{
			"signed_curve25519:AAAAAQ": dev.otk(t, "k1", false),
			"signed_curve25519:AAAAAg": dev.otk(t, "k2", false),
		}
		res := testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{
			"device_keys":   dk,
			"one_time_keys": otks,
			"fallback_keys": map[string]any{"signed_curve25519:AAAAFB": dev.otk(t, "fb", true)},
		}).OK(t)
		if got := get(res, "one_time_key_counts", "signed_curve25519"); got != float64(2) {
			t.Fatalf("one_time_key_counts = %v, want 2", got)
		}
		// A retried upload is fine; a key ID reused with other content is not.
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": dk, "one_time_keys": otks}).OK(t)
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{
			"one_time_keys": map[string]any{"signed_curve25519:AAAAAQ": dev.otk(t, "other", false)},
		}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{
			"one_time_keys": map[string]any{"signed_curve25519:AAAAAw": dev.otk(t, "k3", false)},
		}).OK(t)

		// Bob sees Alice's device, with its display name.
		q := testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
		got := get(q, "device_keys", string(alice.UserID), string(alice.DeviceID))
		if get(got, "keys", "ed25519:"+string(alice.DeviceID)) != dev.key.pub {
			t.Fatalf("query did not return the device keys: %v", q)
		}
		if _, ok := get(got, "unsigned").(map[string]any); !ok {
			t.Errorf("device keys lack unsigned: %v", got)
		}
		// Unknown users are missing, not failures; other servers are failures.
		q = testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{"@nobody:localhost": []string{}, "@x:elsewhere.example": []string{}}}).OK(t)
		if get(q, "failures", "elsewhere.example") == nil {
			t.Errorf("no failure for a remote server: %v", q)
		}

		// Claims give the one-time keys oldest first, then the fallback key.
		claim := func() map[string]any {
			r := testnode.Call(t, bob, "POST", v3+"/keys/claim", map[string]any{
				"one_time_keys": map[string]any{string(alice.UserID): map[string]any{string(alice.DeviceID): "signed_curve25519"}},
			}).OK(t)
			return get(r, "one_time_keys", string(alice.UserID), string(alice.DeviceID)).(map[string]any)
		}
		// k1 and k2 came in one upload (either may go first), k3 later.
		keyOf := func(c map[string]any) any {
			if len(c) != 1 {
				t.Fatalf("claimed %v, want one key", c)
			}
			for _, v := range c {
				return get(v, "key")
			}
			return nil
		}
		a, b, c := keyOf(claim()), keyOf(claim()), keyOf(claim())
		if !((a == "k1" && b == "k2") || (a == "k2" && b == "k1")) || c != "k3" {
			t.Errorf("claim order %v %v %v, want k1/k2 then k3", a, b, c)
		}
		for range 2 {
			fb := claim()
			if get(fb, "signed_curve25519:AAAAFB", "key") != "fb" {
				t.Fatalf("fallback claim = %v", fb)
			}
		}
		// Sync reports no one-time keys left and the fallback key used.
		s := syncOnce(t, alice, "", 0)
		if got := get(s, "device_one_time_keys_count", "signed_curve25519"); got != float64(0) {
			t.Errorf("device_one_time_keys_count = %v", get(s, "device_one_time_keys_count"))
		}
		if types, ok := s["device_unused_fallback_key_types"].([]any); !ok || len(types) != 0 {
			t.Errorf("device_unused_fallback_key_types = %v, want []", s["device_unused_fallback_key_types"])
		}
		// A new fallback key is unused again.
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{
			"fallback_keys": map[string]any{"signed_curve25519:AAAAFC": dev.otk(t, "fb2", true)},
		}).OK(t)
		s = syncOnce(t, alice, "", 0)
		if types, _ := s["device_unused_fallback_key_types"].([]any); len(types) != 1 || types[0] != "signed_curve25519" {
			t.Errorf("device_unused_fallback_key_types = %v", s["device_unused_fallback_key_types"])
		}
	})
}

// TestUploadUnsignedDeviceKeys mirrors Complement's TestDeviceListUpdates,
// which uploads device keys with no signatures: they are stored and served
// as given, for clients to judge.
func TestUploadUnsignedDeviceKeys(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		keys := newFakeDevice(t, alice).deviceKeys(t)
		delete(keys, "signatures")
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": keys}).OK(t)
		got := testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
		dk := get(got, "device_keys", string(alice.UserID), string(alice.DeviceID))
		edKey := "ed25519:" + string(alice.DeviceID)
		if get(dk, "keys", edKey) != get(keys, "keys", edKey) {
			t.Fatalf("queried device keys %v, want the uploaded %v", dk, keys)
		}
	})
}

func TestUploadErrors(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		dev := newFakeDevice(t, alice)

		other := newFakeDevice(t, bob).deviceKeys(t)
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": other}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

		// Required keys missing: malformed (Complement's TestUploadKey/Parallel/Rejects_invalid_device_keys).
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{
			"device_keys": map[string]any{"user_id": alice.UserID, "device_id": alice.DeviceID},
		}).Want(t, http.StatusBadRequest, "M_BAD_JSON")
		noKeys := dev.deviceKeys(t)
		delete(noKeys, "keys")
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": noKeys}).Want(t, http.StatusBadRequest, "M_BAD_JSON")

		bad := dev.deviceKeys(t)
		bad["algorithms"] = []string{"m.megolm.v1.aes-sha2"} // changed after signing
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": bad}).Want(t, http.StatusBadRequest, "M_INVALID_SIGNATURE")

		// Signatures that are there must be right, also when the device's
		// own is missing.
		otherSig := dev.deviceKeys(t)
		otherSig["signatures"] = map[string]any{string(alice.UserID): map[string]any{"ed25519:OTHER": "c2ln"}}
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"device_keys": otherSig}).Want(t, http.StatusBadRequest, "M_INVALID_SIGNATURE")

		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"one_time_keys": map[string]any{"nocolon": "x"}}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"one_time_keys": map[string]any{"a:b": 5}}).Want(t, http.StatusBadRequest, "M_BAD_JSON")
		testnode.Call(t, alice, "POST", v3+"/keys/upload", "{not json").Want(t, http.StatusBadRequest, "M_NOT_JSON")
		many := map[string]any{}
		for i := range 1001 {
			many["signed_curve25519:k"+itoa(i)] = "x"
		}
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{"one_time_keys": many}).Want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")

		testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{}).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		testnode.Call(t, alice, "POST", v3+"/keys/claim", map[string]any{}).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		testnode.Call(t, alice, "GET", v3+"/keys/changes", nil).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		testnode.Call(t, alice, "GET", v3+"/keys/changes?from=junk&to=s1_0", nil).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		alice.AccessToken = ""
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{}).Want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	})
}
