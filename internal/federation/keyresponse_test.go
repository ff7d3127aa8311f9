package federation

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"
)

func ownResponse(t testing.TB, serverName string, key *federation.SigningKey, old ...OldKey) []byte {
	t.Helper()
	raw, err := (&ownKeys{serverName: serverName, key: key, old: old}).response(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// edit returns raw with fn applied to its decoded form, unsigned anew.
func edit(t testing.TB, raw []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseKeyResponse: a server's self-signed response passes; one for
// another server, unsigned, signed by another key, tampered with, or with
// malformed keys or times is refused.
func TestParseKeyResponse(t *testing.T) {
	key := federation.GenerateSigningKey()
	other := federation.GenerateSigningKey()
	old := OldKey{ID: other.ID + "x", Key: other.Pub, ExpiredTS: 1000}
	good := ownResponse(t, "a.example", key, old)
	if r, err := parseKeyResponse(good, "a.example"); err != nil || len(r.OldVerifyKeys) != 1 {
		t.Fatalf("good response: %v, %v", r, err)
	}
	resign := func(raw []byte, k *federation.SigningKey) []byte {
		out, err := addSignature(edit(t, raw, func(m map[string]any) { delete(m, "signatures") }), "a.example", k)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for name, raw := range map[string][]byte{
		"not JSON":        []byte("{"),
		"not an object":   []byte("[]"),
		"other server":    ownResponse(t, "b.example", key),
		"unsigned":        edit(t, good, func(m map[string]any) { delete(m, "signatures") }),
		"signed by other": resign(good, other),
		"tampered":        edit(t, good, func(m map[string]any) { m["valid_until_ts"] = 99999999999999 }),
		"no verify keys":  resign(edit(t, good, func(m map[string]any) { m["verify_keys"] = map[string]any{} }), key),
		"no valid_until":  resign(edit(t, good, func(m map[string]any) { delete(m, "valid_until_ts") }), key),
		"bad key id": resign(edit(t, good, func(m map[string]any) {
			m["verify_keys"] = map[string]any{"curve25519:x": map[string]any{"key": string(key.Pub)}}
		}), key),
		"short key": resign(edit(t, good, func(m map[string]any) {
			m["verify_keys"] = map[string]any{string(key.ID): map[string]any{"key": "AAAA"}}
		}), key),
		"old key without expiry": resign(edit(t, good, func(m map[string]any) {
			m["old_verify_keys"] = map[string]any{"ed25519:old": map[string]any{"key": string(other.Pub)}}
		}), key),
		"too many keys": resign(edit(t, good, func(m map[string]any) {
			olds := map[string]any{}
			for i := range MaxKeysPerResponse {
				olds[fmt.Sprintf("ed25519:old%d", i)] = map[string]any{"key": string(other.Pub), "expired_ts": 1000}
			}
			m["old_verify_keys"] = olds
		}), key),
		"too large": append(good[:len(good)-1], []byte(`,"pad":"`+string(make([]byte, MaxKeyResponseBytes))+`"}`)...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseKeyResponse(raw, "a.example"); !errors.Is(err, errBadKeyResponse) {
				t.Fatalf("accepted or wrong error: %v\n%s", err, raw)
			}
		})
	}
}

// TestCachedKeyValidAt is the room version 5+ rule: a current key until
// valid_until_ts (inclusive), an old key until expired_ts (exclusive).
func TestCachedKeyValidAt(t *testing.T) {
	for _, tc := range []struct {
		key  cachedKey
		ts   int64
		want bool
	}{
		{cachedKey{ValidUntilTS: 100}, 99, true},
		{cachedKey{ValidUntilTS: 100}, 100, true},
		{cachedKey{ValidUntilTS: 100}, 101, false},
		{cachedKey{ValidUntilTS: 500, ExpiredTS: 100}, 99, true},
		{cachedKey{ValidUntilTS: 500, ExpiredTS: 100}, 100, false},
		{cachedKey{ValidUntilTS: 500, ExpiredTS: 100}, 300, false},
	} {
		if got := tc.key.validAt(tc.ts); got != tc.want {
			t.Errorf("%+v at %d: %v, want %v", tc.key, tc.ts, got, tc.want)
		}
	}
}

// FuzzParseKeyResponse: any input is refused or parsed into a response for
// the server asked whose every verify key's self-signature verifies.
func FuzzParseKeyResponse(f *testing.F) {
	key := federation.GenerateSigningKey()
	f.Add(ownResponse(f, "a.example", key, OldKey{ID: "ed25519:old", Key: key.Pub, ExpiredTS: 5}))
	f.Add([]byte(`{"server_name":"a.example","verify_keys":{},"valid_until_ts":1}`))
	f.Add([]byte(`{"server_name":"a.example","verify_keys":{"ed25519:a":{"key":"x"}},"signatures":{"a.example":{"ed25519:a":"x"}},"valid_until_ts":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := parseKeyResponse(raw, "a.example")
		if err != nil {
			if !errors.Is(err, errBadKeyResponse) {
				t.Fatalf("error does not wrap errBadKeyResponse: %v", err)
			}
			return
		}
		if r.ServerName != "a.example" || len(r.VerifyKeys) == 0 || r.ValidUntilTS.UnixMilli() <= 0 {
			t.Fatalf("accepted %s", raw)
		}
		for keyID, k := range r.VerifyKeys {
			if err := signutil.VerifyJSON("a.example", keyID, k.Key, json.RawMessage(raw)); err != nil {
				t.Fatalf("accepted without a valid self-signature by %s: %s", keyID, raw)
			}
		}
	})
}

// TestCheckVerifyKeyVersionLength: key versions up to the spec's 255
// characters for opaque identifiers pass, Complement's 75-character ones
// (complement_ and 64 hex digits) among them; longer ones and other
// characters are refused.
func TestCheckVerifyKeyVersionLength(t *testing.T) {
	pub := federation.GenerateSigningKey().Pub
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"a_1", true},
		{"complement_" + strings.Repeat("d1", 32), true},
		{strings.Repeat("x", 255), true},
		{strings.Repeat("x", 256), false},
		{"", false},
		{"a.b", false},
	} {
		err := checkVerifyKey(id.KeyID("ed25519:"+tc.version), pub)
		if (err == nil) != tc.ok {
			t.Errorf("version of %d characters %.20q: err %v, want ok %v", len(tc.version), tc.version, err, tc.ok)
		}
	}
}
