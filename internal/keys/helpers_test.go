package keys_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// get walks a decoded JSON value along keys.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

const v3 = testnode.V3

// keyPair is an ed25519 signing key.
type keyPair struct {
	priv ed25519.PrivateKey
	pub  string
}

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{priv: priv, pub: base64.RawStdEncoding.EncodeToString(pub)}
}

// sign adds the signature of obj (minus signatures and unsigned) by the
// key to obj["signatures"][user][keyID].
func (k keyPair) sign(t *testing.T, obj map[string]any, user id.UserID, keyID string) map[string]any {
	t.Helper()
	bare := map[string]any{}
	for key, v := range obj {
		if key != "signatures" && key != "unsigned" {
			bare[key] = v
		}
	}
	raw, err := json.Marshal(bare)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := canonicaljson.CanonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.priv, canon))
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
		obj["signatures"] = sigs
	}
	us, _ := sigs[string(user)].(map[string]any)
	if us == nil {
		us = map[string]any{}
		sigs[string(user)] = us
	}
	us[keyID] = sig
	return obj
}

// fakeDevice is a client device with hand-made keys (no Olm).
type fakeDevice struct {
	c   *mautrix.Client
	key keyPair
}

func newFakeDevice(t *testing.T, c *mautrix.Client) *fakeDevice {
	return &fakeDevice{c: c, key: newKeyPair(t)}
}

// deviceKeys returns the device's self-signed device_keys object.
func (d *fakeDevice) deviceKeys(t *testing.T) map[string]any {
	dev := string(d.c.DeviceID)
	obj := map[string]any{
		"user_id":    d.c.UserID,
		"device_id":  dev,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{
			"ed25519:" + dev:    d.key.pub,
			"curve25519:" + dev: base64.RawStdEncoding.EncodeToString([]byte("curve25519 key of " + dev + "......")),
		},
	}
	return d.key.sign(t, obj, d.c.UserID, "ed25519:"+dev)
}

// otk returns a signed one-time (or fallback) key object.
func (d *fakeDevice) otk(t *testing.T, key string, fallback bool) map[string]any {
	obj := map[string]any{"key": key}
	if fallback {
		obj["fallback"] = true
	}
	return d.key.sign(t, obj, d.c.UserID, "ed25519:"+string(d.c.DeviceID))
}

// crossSigningKey builds a cross-signing key object for user.
func crossSigningKey(user id.UserID, usage string, k keyPair) map[string]any {
	return map[string]any{
		"user_id": user,
		"usage":   []string{usage},
		"keys":    map[string]any{"ed25519:" + k.pub: k.pub},
	}
}

// syncOnce runs one /sync with the given since token (and a short timeout
// when since is set).
func syncOnce(t *testing.T, c *mautrix.Client, since string, timeoutMS int) map[string]any {
	t.Helper()
	path := v3 + "/sync?timeout=" + itoa(timeoutMS)
	if since != "" {
		path += "&since=" + since
	}
	return testnode.Call(t, c, "GET", path, nil).OK(t)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// shareRoom creates a room of a's and makes b join it.
func shareRoom(t *testing.T, a, b *mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	room, err := a.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{b.UserID}})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := b.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("join: %v", err)
	}
	return room.RoomID
}
