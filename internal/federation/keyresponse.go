package federation

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"
)

// MaxKeyResponseBytes bounds a server key response (a server lists a few
// keys; the largest real ones are a few kilobytes).
const MaxKeyResponseBytes = 64 << 10

// MaxKeysPerResponse bounds the verify and old verify keys of one server
// key response. Each is a row of the key cache holding the whole response,
// so a server listing hundreds of keys would make the cache store its
// response hundreds of times; real servers list a handful.
const MaxKeysPerResponse = 64

// keyResponse is a server key response that passed parseKeyResponse.
type keyResponse = federation.ServerKeyResponse

// errBadKeyResponse is wrapped by every reason parseKeyResponse refuses.
var errBadKeyResponse = errors.New("bad server key response")

// parseKeyResponse parses a server key response (GET /_matrix/key/v2/server
// or one entry of a notary's server_keys) and checks it: it names
// serverName, has a valid_until_ts, lists at least one well-formed ed25519
// verify key, and carries a valid self-signature by every verify key.
func parseKeyResponse(raw []byte, serverName string) (*keyResponse, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w from %s: %s", errBadKeyResponse, serverName, fmt.Sprintf(format, args...))
	}
	if len(raw) > MaxKeyResponseBytes {
		return nil, bad("larger than %d bytes", MaxKeyResponseBytes)
	}
	var r keyResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, bad("%v", err)
	}
	if r.ServerName != serverName {
		return nil, bad("it is for %q", r.ServerName)
	}
	if r.ValidUntilTS.UnixMilli() <= 0 {
		return nil, bad("no valid_until_ts")
	}
	if len(r.VerifyKeys) == 0 {
		return nil, bad("no verify_keys")
	}
	if n := len(r.VerifyKeys) + len(r.OldVerifyKeys); n > MaxKeysPerResponse {
		return nil, bad("%d keys, more than %d", n, MaxKeysPerResponse)
	}
	for keyID, k := range r.VerifyKeys {
		if err := checkVerifyKey(keyID, k.Key); err != nil {
			return nil, bad("%v", err)
		}
		if err := signutil.VerifyJSON(serverName, keyID, k.Key, json.RawMessage(raw)); err != nil {
			return nil, bad("self-signature by %s: %v", keyID, err)
		}
	}
	for keyID, k := range r.OldVerifyKeys {
		if err := checkVerifyKey(keyID, k.Key); err != nil {
			return nil, bad("old key: %v", err)
		}
		if k.ExpiredTS.UnixMilli() <= 0 {
			return nil, bad("old key %s without expired_ts", keyID)
		}
	}
	return &r, nil
}

// maxKeyVersion is the longest key version accepted: the spec's limit for
// opaque identifiers, 255 characters. Complement's servers use 75
// (complement_ and 64 hex digits).
const maxKeyVersion = 255

// checkVerifyKey checks a key ID (ed25519:<version>) and its unpadded
// base64 public key. The spec allows [a-zA-Z0-9_] in the version; '-' is
// accepted too, as mautrix-go generates key IDs in unpadded URL-safe
// base64.
func checkVerifyKey(keyID id.KeyID, key id.SigningKey) error {
	version, ok := strings.CutPrefix(string(keyID), "ed25519:")
	if !ok || version == "" || len(version) > maxKeyVersion || strings.ContainsFunc(version, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("key ID %q is not ed25519:<letters, digits, _ or ->", keyID)
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(string(key), "="))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return fmt.Errorf("key %s is not an unpadded base64 ed25519 public key", keyID)
	}
	return nil
}

// addSignature returns raw with one more signature by key on behalf of
// serverName (a notary's signature on a response it passes on).
func addSignature(raw []byte, serverName string, key *federation.SigningKey) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("sign response: %w", err)
	}
	sigs := map[string]map[string]string{}
	if s, ok := obj["signatures"]; ok {
		if err := json.Unmarshal(s, &sigs); err != nil {
			return nil, fmt.Errorf("sign response: signatures: %w", err)
		}
	}
	delete(obj, "signatures")
	sig, err := key.SignJSON(obj)
	if err != nil {
		return nil, fmt.Errorf("sign response: %w", err)
	}
	if sigs[serverName] == nil {
		sigs[serverName] = map[string]string{}
	}
	sigs[serverName][string(key.ID)] = sig
	b, err := json.Marshal(sigs)
	if err != nil {
		return nil, err
	}
	obj["signatures"] = b
	return json.Marshal(obj)
}
