package keys_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

const backupAlg = "m.megolm_backup.v1.curve25519-aes-sha2"

func keyData(verified bool, fmi, fc int, tag string) map[string]any {
	return map[string]any{
		"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
		"session_data": map[string]any{"ephemeral": "e", "ciphertext": tag, "mac": "m"},
	}
}

func TestKeyBackup(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		testnode.Call(t, alice, "GET", v3+"/room_keys/version", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		testnode.Call(t, alice, "PUT", v3+"/room_keys/keys?version=1", map[string]any{"rooms": map[string]any{}}).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		testnode.Call(t, alice, "POST", v3+"/room_keys/version", map[string]any{"algorithm": backupAlg}).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")

		v := testnode.Call(t, alice, "POST", v3+"/room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk"}}).OK(t)
		if v["version"] != "1" {
			t.Fatalf("version = %v", v)
		}
		info := testnode.Call(t, alice, "GET", v3+"/room_keys/version", nil).OK(t)
		if info["version"] != "1" || info["count"] != float64(0) || get(info, "auth_data", "public_key") != "pk" {
			t.Fatalf("info = %v", info)
		}
		etag0 := info["etag"]

		const room, sess = "!room:localhost", "sess1"
		keyPath := v3 + "/room_keys/keys/" + room + "/" + sess
		up := testnode.Call(t, alice, "PUT", keyPath+"?version=1", keyData(false, 5, 1, "first")).OK(t)
		if up["count"] != float64(1) || up["etag"] == etag0 {
			t.Fatalf("put = %v (etag before %v)", up, etag0)
		}
		// The spec's replacement rules, each against the stored key
		// {verified: false, first_message_index: 5, forwarded_count: 1}.
		for _, tc := range []struct {
			name    string
			data    map[string]any
			replace bool
		}{
			{"higher index", keyData(false, 6, 0, "x"), false},
			{"same, more forwards", keyData(false, 5, 2, "x"), false},
			{"identical", keyData(false, 5, 1, "x"), false},
			{"fewer forwards", keyData(false, 5, 0, "fewer"), true},
			{"lower index", keyData(false, 2, 3, "lower"), true},
			{"verified beats index", keyData(true, 9, 9, "verified"), true},
			{"unverified never replaces verified", keyData(false, 0, 0, "x"), false},
		} {
			before := testnode.Call(t, alice, "GET", keyPath+"?version=1", nil).OK(t)
			res := testnode.Call(t, alice, "PUT", keyPath+"?version=1", tc.data).OK(t)
			after := testnode.Call(t, alice, "GET", keyPath+"?version=1", nil).OK(t)
			replaced := get(after, "session_data", "ciphertext") == get(tc.data, "session_data", "ciphertext")
			if replaced != tc.replace {
				t.Errorf("%s: replaced = %v, want %v (before %v)", tc.name, replaced, tc.replace, before)
			}
			if res["count"] != float64(1) {
				t.Errorf("%s: count = %v", tc.name, res["count"])
			}
		}

		// Bulk upload of two rooms, then reads at each level.
		testnode.Call(t, alice, "PUT", v3+"/room_keys/keys?version=1", map[string]any{"rooms": map[string]any{
			"!other:localhost": map[string]any{"sessions": map[string]any{"s2": keyData(false, 0, 0, "s2"), "s3": keyData(false, 0, 0, "s3")}},
		}}).OK(t)
		all := testnode.Call(t, alice, "GET", v3+"/room_keys/keys?version=1", nil).OK(t)
		if len(get(all, "rooms").(map[string]any)) != 2 {
			t.Errorf("all keys = %v", all)
		}
		r := testnode.Call(t, alice, "GET", v3+"/room_keys/keys/!other:localhost?version=1", nil).OK(t)
		if len(get(r, "sessions").(map[string]any)) != 2 {
			t.Errorf("room keys = %v", r)
		}
		r = testnode.Call(t, alice, "GET", v3+"/room_keys/keys/!none:localhost?version=1", nil).OK(t)
		if s, ok := get(r, "sessions").(map[string]any); !ok || len(s) != 0 {
			t.Errorf("unknown room = %v, want empty sessions", r)
		}
		testnode.Call(t, alice, "GET", v3+"/room_keys/keys/!none:localhost/x?version=1", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		testnode.Call(t, alice, "GET", v3+"/room_keys/keys?version=7", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		testnode.Call(t, alice, "GET", v3+"/room_keys/keys", nil).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		testnode.Call(t, alice, "PUT", keyPath+"?version=1", map[string]any{"first_message_index": 1}).Want(t, http.StatusBadRequest, "M_BAD_JSON")

		del := testnode.Call(t, alice, "DELETE", v3+"/room_keys/keys/!other:localhost/s2?version=1", nil).OK(t)
		if del["count"] != float64(2) {
			t.Errorf("after delete = %v", del)
		}

		// Version updates: only auth_data may change.
		testnode.Call(t, alice, "PUT", v3+"/room_keys/version/1", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk2"}, "version": "1"}).OK(t)
		testnode.Call(t, alice, "PUT", v3+"/room_keys/version/1", map[string]any{"algorithm": "other", "auth_data": map[string]any{}}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		testnode.Call(t, alice, "PUT", v3+"/room_keys/version/1", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}, "version": "2"}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		testnode.Call(t, alice, "PUT", v3+"/room_keys/version/9", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}}).Want(t, http.StatusNotFound, "M_NOT_FOUND")

		// A new version becomes current; uploads to the old one are refused.
		v = testnode.Call(t, alice, "POST", v3+"/room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "new"}}).OK(t)
		if v["version"] != "2" {
			t.Fatalf("second version = %v", v)
		}
		e := testnode.Call(t, alice, "PUT", keyPath+"?version=1", keyData(true, 0, 0, "x")).Want(t, http.StatusForbidden, "M_WRONG_ROOM_KEYS_VERSION").JSON(t)
		if e["current_version"] != "2" {
			t.Errorf("current_version = %v", e["current_version"])
		}
		testnode.Call(t, alice, "GET", v3+"/room_keys/version/1", nil).OK(t)

		// Deleting a version; deleting it again is fine, an unknown one is not.
		testnode.Call(t, alice, "DELETE", v3+"/room_keys/version/2", nil).OK(t)
		testnode.Call(t, alice, "DELETE", v3+"/room_keys/version/2", nil).OK(t)
		testnode.Call(t, alice, "DELETE", v3+"/room_keys/version/99", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		testnode.Call(t, alice, "GET", v3+"/room_keys/version/2", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		if cur := testnode.Call(t, alice, "GET", v3+"/room_keys/version", nil).OK(t); cur["version"] != "1" || cur["count"] != float64(2) {
			t.Errorf("current after delete = %v", cur)
		}
	})
}

func TestDeleteAndDeactivate(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob := n.Register("alice"), n.Register("bob")
		dev := newFakeDevice(t, alice)
		testnode.Call(t, alice, "POST", v3+"/keys/upload", map[string]any{
			"device_keys": dev.deviceKeys(t), "one_time_keys": map[string]any{"signed_curve25519:A": dev.otk(t, "k", false)},
		}).OK(t)
		master := newKeyPair(t)
		testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", map[string]any{"master_key": crossSigningKey(alice.UserID, "master", master)}).OK(t)
		testnode.Call(t, alice, "POST", v3+"/room_keys/version", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}}).OK(t)
		testnode.Call(t, bob, "PUT", v3+"/sendToDevice/m.test/1", map[string]any{
			"messages": map[string]any{string(alice.UserID): map[string]any{"*": map[string]any{}}},
		}).OK(t)
		count := func(table string) int {
			var c int
			if err := n.DB.QueryRow(ctx, "SELECT COUNT(*) FROM "+table+" WHERE user_id = $1", alice.UserID).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		if err := n.Accounts.DeleteDevice(ctx, alice.UserID, alice.DeviceID); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"e2e_device_keys", "e2e_one_time_keys", "to_device_messages"} {
			if c := count(table); c != 0 {
				t.Errorf("%s has %d rows after the device was deleted", table, c)
			}
		}
		if count("e2e_cross_signing_keys") != 1 || count("key_backup_versions") != 1 {
			t.Errorf("account-wide keys went with one device")
		}
		if err := n.Accounts.Deactivate(ctx, alice.UserID, false); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"e2e_cross_signing_keys", "key_backup_versions"} {
			if c := count(table); c != 0 {
				t.Errorf("%s has %d rows after deactivation", table, c)
			}
		}
	})
}
