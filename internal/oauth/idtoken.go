package oauth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"
)

// ID tokens are issued when a client asks for the openid scope, as
// matrix-js-sdk (Element Web) does: it checks an ID token's issuer,
// audience, nonce and expiry, and fetches jwks_uri. They are JWTs signed
// with EdDSA by a key derived from the server's signing key, so that the
// federation key never signs anything but federation data.

// idTokenLifetime is how long an ID token is valid.
const idTokenLifetime = time.Hour

// idTokenSigner signs ID tokens.
type idTokenSigner struct {
	key ed25519.PrivateKey
	kid string
}

// newIDTokenSigner derives the ID token key from the server key.
func newIDTokenSigner(serverKey ed25519.PrivateKey) *idTokenSigner {
	if len(serverKey) != ed25519.PrivateKeySize {
		return nil
	}
	mac := hmac.New(sha256.New, serverKey.Seed())
	mac.Write([]byte("matrixos oauth id_token signing key"))
	key := ed25519.NewKeyFromSeed(mac.Sum(nil))
	sum := sha256.Sum256(key.Public().(ed25519.PublicKey))
	return &idTokenSigner{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:8])}
}

// jwk is the public key as a JSON Web Key (RFC 8037).
func (s *idTokenSigner) jwk() map[string]string {
	return map[string]string{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": s.kid,
		"x": base64.RawURLEncoding.EncodeToString(s.key.Public().(ed25519.PublicKey)),
	}
}

// sign makes the ID token of a session.
func (s *idTokenSigner) sign(issuer, clientID string, user id.UserID, nonce string, now time.Time) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": s.kid})
	if err != nil {
		return "", err
	}
	claims := map[string]any{
		"iss": issuer, "sub": string(user), "aud": clientID,
		"iat": now.Unix(), "auth_time": now.Unix(), "exp": now.Add(idTokenLifetime).Unix(),
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, []byte(input))), nil
}

// getKeys is jwks_uri: the key ID tokens are signed with.
func (s *Service) getKeys(w http.ResponseWriter, r *http.Request) {
	keys := []map[string]string{}
	if s.idTokens != nil {
		keys = append(keys, s.idTokens.jwk())
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}
