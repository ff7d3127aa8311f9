package keys_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// eachEngine runs f against a fresh node on each database engine.
func eachEngine(t *testing.T, f func(t *testing.T, n *testnode.Node)) {
	t.Helper()
	for _, e := range testnode.Engines {
		t.Run(string(e), func(t *testing.T) {
			f(t, testnode.Start(t, e))
		})
	}
}

// response is a raw HTTP answer.
type response struct {
	Status int
	Body   []byte
}

// JSON decodes the body as an object.
func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// call sends a request with the client's access token. body is sent as is
// when it is a string, JSON-encoded otherwise. Responses are checked
// against the spec and must never be a 500.
func call(t *testing.T, c *mautrix.Client, method, path string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, c.HomeserverURL.String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode >= 500 {
		t.Fatalf("%s %s: status %d: %s", method, path, res.StatusCode, b)
	}
	p, _, _ := strings.Cut(path, "?")
	if err := spectest.LoadDefault(t).ValidateResponse(method, p, res.StatusCode, b); err != nil && !errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: %v\nbody: %s", method, path, err, b)
	}
	return response{Status: res.StatusCode, Body: b}
}

// wantErr fails unless r is an error with this status and errcode.
func wantErr(t *testing.T, r response, status int, errcode string) map[string]any {
	t.Helper()
	m := r.JSON(t)
	if r.Status != status || m["errcode"] != errcode {
		t.Fatalf("got %d %v, want %d %s: %s", r.Status, m["errcode"], status, errcode, r.Body)
	}
	return m
}

// wantOK fails unless r is a 200 and returns its body.
func wantOK(t *testing.T, r response) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("got %d, want 200: %s", r.Status, r.Body)
	}
	return r.JSON(t)
}

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

const v3 = "/_matrix/client/v3"

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
	return wantOK(t, call(t, c, "GET", path, nil))
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
