package oauth_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestIDToken issues an ID token for the openid scope, as matrix-js-sdk
// (Element Web) asks with the unstable scope names, signed by the key
// that jwks_uri serves and carrying the claims the SDK checks.
func TestIDToken(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	clientID := webClient(t, n)
	meta := n.Do(t, "GET", "/_matrix/client/v1/auth_metadata", "", nil).OK(t)
	jwksURI, _ := meta["jwks_uri"].(string)
	if !strings.HasPrefix(jwksURI, n.URL+"/") {
		t.Fatalf("jwks_uri %q", jwksURI)
	}
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	r := n.Do(t, "GET", strings.TrimPrefix(jwksURI, n.URL), "", nil, testnode.NoSpecCheck())
	if err := json.Unmarshal(r.Body, &jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0]["kty"] != "OKP" {
		t.Fatalf("jwks: %d %s", r.Status, r.Body)
	}
	pub, err := base64.RawURLEncoding.DecodeString(jwks.Keys[0]["x"])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("jwk x: %v", err)
	}

	b := newBrowser(t, n)
	verifier, challenge := pkce()
	scope := "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:JSDEVICE01"
	p := b.get(authorizeURL(n, clientID, challenge, "", url.Values{"scope": {scope}}))
	p = b.login(p, alice.UserID.Localpart(), testnode.Password)
	code := callback(t, b.submit(p, "/oauth2/consent", url.Values{"decision": {"allow"}})).Get("code")
	status, tok := exchange(t, n, clientID, code, verifier)
	if status != http.StatusOK || tok["scope"] != scope {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	if _, who := whoami(t, n, tok["access_token"].(string)); who["device_id"] != "JSDEVICE01" {
		t.Fatalf("whoami with unstable scopes: %v", who)
	}
	idToken, _ := tok["id_token"].(string)
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWT", idToken)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatalf("id_token signature does not verify with the jwks key: %v", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	exp, _ := claims["exp"].(float64)
	if claims["iss"] != meta["issuer"] || claims["aud"] != clientID || claims["sub"] != string(alice.UserID) ||
		claims["nonce"] != "nonce-456" || time.Unix(int64(exp), 0).Before(time.Now()) {
		t.Fatalf("id_token claims %v", claims)
	}

	// Without openid, no ID token.
	verifier, challenge = pkce()
	code = b.authorize(clientID, challenge, "PLAINDEV01", "")
	if _, tok := exchange(t, n, clientID, code, verifier); tok["id_token"] != nil {
		t.Fatalf("id_token without the openid scope: %v", tok)
	}
}
