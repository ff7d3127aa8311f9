package interop_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"
)

// testKeys: each side fetches and checks the other's server keys.
// Matrix OS's KeyRing fetches Dendrite's key directly and its notary
// answers for Dendrite; Dendrite's notary fetches Matrix OS's key (over
// HTTPS it verifies against the test CA) and answers with Matrix OS's
// self-signature and its own; Dendrite verifies our signed requests.
func testKeys(t *testing.T, p peers) {
	ctx := context.Background()
	d, n := p.d, p.n
	ours := n.Federation.Client.Key

	t.Run("our KeyRing fetches Dendrite's key", func(t *testing.T) {
		got, err := n.Federation.Keys.VerifyKey(ctx, d.ServerName, d.KeyID, time.Now())
		if err != nil || got != d.Key {
			t.Fatalf("Dendrite's key %s: %q, %v; want %q", d.KeyID, got, err, d.Key)
		}
	})

	t.Run("our notary answers for Dendrite", func(t *testing.T) {
		r := n.FederationDo(t, "GET", "/_matrix/key/v2/query/"+d.ServerName, nil).OK(t)
		keys, _ := r["server_keys"].([]any)
		if len(keys) != 1 {
			t.Fatalf("our notary's answer for Dendrite: %v", r)
		}
		raw, err := json.Marshal(keys[0])
		if err != nil {
			t.Fatal(err)
		}
		verifySigned(t, raw, d.ServerName, d.KeyID, d.Key, "Dendrite's self-signature")
		verifySigned(t, raw, n.Config.ServerName, ours.ID, ours.Pub, "our notary signature")
	})

	t.Run("Dendrite's notary answers for us", func(t *testing.T) {
		var resp struct {
			ServerKeys []json.RawMessage `json:"server_keys"`
		}
		req := federation.ReqQueryKeys{ServerKeys: map[string]map[id.KeyID]federation.QueryKeysCriteria{n.Config.ServerName: {}}}
		if err := n.Federation.Client.MakeRequest(ctx, d.ServerName, false, "POST", federation.KeyURLPath{"v2", "query"}, req, &resp); err != nil {
			t.Fatalf("Dendrite's notary: %v", err)
		}
		if len(resp.ServerKeys) != 1 {
			t.Fatalf("Dendrite's notary answered %d key responses for us, want 1", len(resp.ServerKeys))
		}
		raw := resp.ServerKeys[0]
		var keys federation.ServerKeyResponse
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatal(err)
		}
		if keys.ServerName != n.Config.ServerName || keys.VerifyKeys[ours.ID].Key != ours.Pub {
			t.Fatalf("Dendrite's notary answer for us: %s", raw)
		}
		verifySigned(t, raw, n.Config.ServerName, ours.ID, ours.Pub, "our self-signature")
		verifySigned(t, raw, d.ServerName, d.KeyID, d.Key, "Dendrite's notary signature")
	})

	t.Run("Dendrite verifies our signed requests", func(t *testing.T) {
		v, err := n.Federation.Client.Version(ctx, d.ServerName)
		if err != nil || v.Server.Name != "Dendrite" {
			t.Fatalf("Dendrite's version: %+v, %v", v, err)
		}
		// A profile query needs X-Matrix: Dendrite fetches our key to
		// check the signature.
		alice := d.Register("alice")
		if err := alice.SetDisplayName(ctx, "Alice on Dendrite"); err != nil {
			t.Fatal(err)
		}
		profile, err := n.Federation.Client.QueryProfile(ctx, alice.UserID)
		if err != nil || profile.DisplayName != "Alice on Dendrite" {
			t.Fatalf("signed profile query to Dendrite: %+v, %v", profile, err)
		}
		// The same query unsigned is refused: the answer above is the
		// signature's doing.
		_, resp, err := n.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
			ServerName: d.ServerName, Method: "GET", Path: federation.URLPath{"v1", "query", "profile"},
			Query: url.Values{"user_id": {alice.UserID.String()}},
		})
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unsigned profile query to Dendrite: %v, want 401", err)
		}
	})
}

// verifySigned fails the test unless raw carries server's valid signature
// with the key.
func verifySigned(t *testing.T, raw json.RawMessage, server string, keyID id.KeyID, key id.SigningKey, what string) {
	t.Helper()
	if err := signutil.VerifyJSON(server, keyID, key, raw); err != nil {
		t.Fatalf("%s: %v in %s", what, err, raw)
	}
}
