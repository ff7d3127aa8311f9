package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// serverKey fetches a node's key response from its federation listener
// and returns its current key and the whole response.
func serverKey(t *testing.T, n *testnode.Node) (id.KeyID, id.SigningKey, map[string]any) {
	t.Helper()
	r := n.FederationDo(t, "GET", "/_matrix/key/v2/server", nil)
	body := r.OK(t)
	var resp federation.ServerKeyResponse
	if err := json.Unmarshal(r.Body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ServerName != n.Config.ServerName || len(resp.VerifyKeys) != 1 {
		t.Fatalf("key response of %s: %s", n.Config.ServerName, r.Body)
	}
	if _, ok := body["old_verify_keys"].(map[string]any); !ok {
		t.Fatalf("key response of %s without old_verify_keys: %s", n.Config.ServerName, r.Body)
	}
	if err := resp.VerifySelfSignature(); err != nil {
		t.Fatalf("key response of %s is not self-signed: %v", n.Config.ServerName, err)
	}
	for keyID, k := range resp.VerifyKeys {
		return keyID, k.Key, body
	}
	panic("unreachable")
}

func withNotary(server string) testnode.Option {
	return func(c *config.Config) { c.TrustedKeyServers = []string{server} }
}

// cachedResponse returns the key response a node cached for a server's
// key, or "".
func cachedResponse(t *testing.T, n *testnode.Node, server string, keyID id.KeyID) string {
	t.Helper()
	var resp string
	err := n.DB.QueryRow(context.Background(), `SELECT response FROM federation_server_keys WHERE server_name = $1 AND key_id = $2`, server, string(keyID)).Scan(&resp)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		t.Fatal(err)
	}
	return resp
}

// TestKeysBetweenNodes: node A fetches node B's key directly, and node C's
// key through B acting as notary; B's notary answer carries C's
// self-signature and B's own; the keys are cached in A's database.
func TestKeysBetweenNodes(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			ctx := context.Background()
			ca := testnode.NewCA(t)
			b := testnode.StartFederating(t, engine, ca)
			c := testnode.StartFederating(t, engine, ca)
			a := testnode.StartFederating(t, engine, ca, withNotary(b.Config.ServerName))
			bName, cName := b.Config.ServerName, c.Config.ServerName
			bKeyID, bKey, _ := serverKey(t, b)
			cKeyID, cKey, _ := serverKey(t, c)

			// Directly: B is a notary for others, not for itself.
			got, err := a.Federation.Keys.VerifyKey(ctx, bName, bKeyID, time.Now())
			if err != nil || got != bKey {
				t.Fatalf("A's key for B: %q, %v; want %q", got, err, bKey)
			}
			if cachedResponse(t, a, bName, bKeyID) == "" {
				t.Fatal("A did not cache B's key")
			}

			// Through the notary B.
			if cachedResponse(t, b, cName, cKeyID) != "" {
				t.Fatal("B knows C's key before anyone asked")
			}
			got, err = a.Federation.Keys.VerifyKey(ctx, cName, cKeyID, time.Now())
			if err != nil || got != cKey {
				t.Fatalf("A's key for C: %q, %v; want %q", got, err, cKey)
			}
			if cachedResponse(t, b, cName, cKeyID) == "" {
				t.Fatal("B, the notary, did not fetch and cache C's key")
			}
			viaB := cachedResponse(t, a, cName, cKeyID)
			if err := signutil.VerifyJSON(bName, bKeyID, bKey, json.RawMessage(viaB)); err != nil {
				t.Fatalf("A's cached response for C is not the notary's (B's signature: %v): %s", err, viaB)
			}
			if err := signutil.VerifyJSON(cName, cKeyID, cKey, json.RawMessage(viaB)); err != nil {
				t.Fatalf("C's self-signature: %v", err)
			}

			// The GET form of the notary answers from B's cache.
			r := b.FederationDo(t, "GET", "/_matrix/key/v2/query/"+cName, nil).OK(t)
			keys := r["server_keys"].([]any)
			if len(keys) != 1 {
				t.Fatalf("GET query for C: %v", r)
			}
			raw, _ := json.Marshal(keys[0])
			if err := signutil.VerifyJSON(bName, bKeyID, bKey, json.RawMessage(raw)); err != nil {
				t.Fatalf("notary signature: %v", err)
			}

			// A key valid only before now is not valid later (v5+ rule).
			if _, err := a.Federation.Keys.VerifyKey(ctx, bName, bKeyID, time.Now().Add(fed.KeyValidity+time.Hour)); !errors.Is(err, fed.ErrNoKey) {
				t.Fatalf("B's key accepted past its valid_until_ts: %v", err)
			}
		})
	}
}

// whoami is a test-only authenticated route: it answers with the origin
// and the body it saw.
func whoami(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if len(body) == 0 {
		body = []byte("null")
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"origin": fed.Origin(r.Context()), "content": json.RawMessage(body)})
}

// xmatrix builds an X-Matrix Authorization header.
func xmatrix(t *testing.T, key *federation.SigningKey, origin, destination, method, uri string, content any) string {
	t.Helper()
	obj := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": destination}
	if content != nil {
		obj["content"] = content
	}
	if _, err := canonicaljson.Marshal(obj); err != nil {
		t.Fatal(err)
	}
	sig, err := key.SignJSON(obj)
	if err != nil {
		t.Fatal(err)
	}
	return federation.XMatrixAuth{Origin: origin, Destination: destination, KeyID: key.ID, Signature: sig}.String()
}

// TestXMatrixAuthentication: a request A signs is accepted by B with A as
// its origin; unsigned, forged, tampered and misdirected ones get 401
// M_UNAUTHORIZED.
func TestXMatrixAuthentication(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	const route = "/_matrix/federation/unstable/org.matrixos.test/whoami"
	b.Federation.Handle("GET "+route, http.HandlerFunc(whoami))
	b.Federation.Handle("POST "+route, http.HandlerFunc(whoami))
	aName, bName := a.Config.ServerName, b.Config.ServerName
	path := federation.URLPath{"unstable", "org.matrixos.test", "whoami"}

	for _, method := range []string{"GET", "POST"} {
		var reqBody any
		if method == "POST" {
			reqBody = map[string]any{"hello": "world"}
		}
		var got struct {
			Origin  string         `json:"origin"`
			Content map[string]any `json:"content"`
		}
		_, _, err := a.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
			ServerName: bName, Method: method, Path: path, Authenticate: true, RequestJSON: reqBody, ResponseJSON: &got,
		})
		if err != nil {
			t.Fatalf("signed %s from A: %v", method, err)
		}
		if got.Origin != aName || (method == "POST" && got.Content["hello"] != "world") {
			t.Fatalf("signed %s from A: B saw %+v", method, got)
		}
	}

	forger := federation.GenerateSigningKey()
	aKeyID, _, _ := serverKey(t, a)
	forger.ID = aKeyID // A's key ID, another key
	real := a.Node.Federation.Client.Key
	for name, header := range map[string]string{
		"unsigned":          "",
		"bearer":            "Bearer abc",
		"no signature":      `X-Matrix origin="` + aName + `",destination="` + bName + `",key="` + string(aKeyID) + `"`,
		"forged key":        xmatrix(t, forger, aName, bName, "POST", route, map[string]any{"hello": "world"}),
		"tampered body":     xmatrix(t, real, aName, bName, "POST", route, map[string]any{"hello": "mars"}),
		"other destination": xmatrix(t, real, aName, "elsewhere.example", "POST", route, map[string]any{"hello": "world"}),
		"unknown key":       xmatrix(t, federation.GenerateSigningKey(), aName, bName, "POST", route, map[string]any{"hello": "world"}),
		"claims to be B":    xmatrix(t, real, bName, bName, "POST", route, map[string]any{"hello": "world"}),
		"origin not a name": xmatrix(t, real, "not a name!", bName, "POST", route, map[string]any{"hello": "world"}),
	} {
		t.Run(name, func(t *testing.T) {
			b.FederationDo(t, "POST", route, map[string]any{"hello": "world"}, testnode.Header("Authorization", header), testnode.NoSpecCheck()).
				Want(t, http.StatusUnauthorized, "M_UNAUTHORIZED")
		})
	}
	// The same header, untampered, passes: the refusals above are the
	// signature's doing.
	b.FederationDo(t, "POST", route, map[string]any{"hello": "world"},
		testnode.Header("Authorization", xmatrix(t, real, aName, bName, "POST", route, map[string]any{"hello": "world"})), testnode.NoSpecCheck()).OK(t)
}

// TestOutboundRefusesLoopback: without allow_private_networks, outbound
// federation to a loopback server is refused by netguard before any
// connection; with it (the other tests) the same request works.
func TestOutboundRefusesLoopback(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	a := testnode.StartFederating(t, testnode.SQLite, ca, func(c *config.Config) { c.AllowPrivateNetworks = nil })
	allowed := testnode.StartFederating(t, testnode.SQLite, ca)
	if _, err := allowed.Federation.Client.Version(ctx, b.Config.ServerName); err != nil {
		t.Fatalf("version with loopback allowed: %v", err)
	}
	_, err := a.Federation.Client.Version(ctx, b.Config.ServerName)
	if !errors.Is(err, netguard.ErrForbidden) {
		t.Fatalf("version of a loopback server without allow_private_networks: %v, want netguard.ErrForbidden", err)
	}
	bKeyID, _, _ := serverKey(t, b)
	if _, err := a.Federation.Keys.VerifyKey(ctx, b.Config.ServerName, bKeyID, time.Now()); !errors.Is(err, fed.ErrNoKey) {
		t.Fatalf("key fetch from a loopback server without allow_private_networks: %v", err)
	}
}

// TestKeyRotate: after matrixos key rotate and a restart, B signs with a
// new key and serves the old one in old_verify_keys with its expired_ts;
// A and a node that never saw the old key verify it for times before the
// rotation, and not after.
func TestKeyRotate(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	bName := b.Config.ServerName
	oldID, oldKey, _ := serverKey(t, b)
	if _, err := a.Federation.Keys.VerifyKey(ctx, bName, oldID, time.Now()); err != nil {
		t.Fatal(err)
	}
	before := time.Now()

	b.Stop()
	rotatedFrom, newID, err := node.RotateKey(ctx, b.Config, node.NewLogger(b.Config, io.Discard))
	if err != nil || rotatedFrom != oldID || newID == oldID {
		t.Fatalf("rotate: %s -> %s, %v", rotatedFrom, newID, err)
	}
	b = b.Restart()
	after := time.Now()

	gotID, newKey, resp := serverKey(t, b)
	if gotID != newID {
		t.Fatalf("B signs with %s after rotating to %s", gotID, newID)
	}
	old, _ := resp["old_verify_keys"].(map[string]any)[string(oldID)].(map[string]any)
	expired, _ := old["expired_ts"].(float64)
	if old["key"] != string(oldKey) || int64(expired) < before.UnixMilli() || int64(expired) > after.UnixMilli() {
		t.Fatalf("old_verify_keys after rotation: %v", resp["old_verify_keys"])
	}

	for name, n := range map[string]*testnode.Node{"A, which knew the old key": a, "C, which did not": c} {
		got, err := n.Federation.Keys.VerifyKey(ctx, bName, newID, time.Now())
		if err != nil || got != newKey {
			t.Fatalf("%s: new key %q, %v", name, got, err)
		}
		got, err = n.Federation.Keys.VerifyKey(ctx, bName, oldID, before)
		if err != nil || got != oldKey {
			t.Fatalf("%s: old key at a time before the rotation: %q, %v", name, got, err)
		}
		if _, err := n.Federation.Keys.VerifyKey(ctx, bName, oldID, after.Add(time.Second)); !errors.Is(err, fed.ErrNoKey) {
			t.Fatalf("%s: old key accepted after it expired: %v", name, err)
		}
	}
	// B still authenticates with the new key.
	var got struct{ Server map[string]string }
	if _, _, err := b.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
		ServerName: a.Config.ServerName, Method: "GET", Path: federation.URLPath{"v1", "version"}, Authenticate: true, ResponseJSON: &got,
	}); err != nil || got.Server["name"] == "" {
		t.Fatalf("signed request after rotation: %+v, %v", got, err)
	}
}

// TestKeyEndpointsBadInput: malformed key queries get the spec's errors,
// and a server that cannot be reached is left out of the answer.
func TestKeyEndpointsBadInput(t *testing.T) {
	ca := testnode.NewCA(t)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		errcode      string
	}{
		{"POST", "/_matrix/key/v2/query", "not json", 400, "M_NOT_JSON"},
		{"POST", "/_matrix/key/v2/query", "[]", 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", "{}", 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys": []}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys": {"bad name!": {}}}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys": {"example.org": {"ed25519:a": {"minimum_valid_until_ts": "soon"}}}}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys": {"example.org": {"ed25519:a": 5}}}`, 400, "M_BAD_JSON"},
		{"GET", "/_matrix/key/v2/query/bad%20name", nil, 400, "M_INVALID_PARAM"},
		{"GET", "/_matrix/key/v2/query/example.org?minimum_valid_until_ts=soon", nil, 400, "M_INVALID_PARAM"},
		{"PUT", "/_matrix/key/v2/server", "{}", 405, "M_UNRECOGNIZED"},
		{"GET", "/_matrix/federation/v1/no_such_endpoint", nil, 404, "M_UNRECOGNIZED"},
	} {
		t.Run(tc.method+" "+tc.path+" "+fmtBody(tc.body), func(t *testing.T) {
			b.FederationDo(t, tc.method, tc.path, tc.body, testnode.NoSpecCheck()).Want(t, tc.status, tc.errcode)
		})
	}
	// Nobody listens on port 1: the answer is empty, not an error.
	for _, r := range []*testnode.Response{
		b.FederationDo(t, "GET", "/_matrix/key/v2/query/127.0.0.1:1", nil),
		b.FederationDo(t, "POST", "/_matrix/key/v2/query", `{"server_keys": {"127.0.0.1:1": {}}}`),
	} {
		if keys := r.OK(t)["server_keys"].([]any); len(keys) != 0 {
			t.Fatalf("keys of an unreachable server: %v", keys)
		}
	}
	// Its own keys, asked of itself as a notary, come signed.
	bKeyID, bKey, _ := serverKey(t, b)
	keys := b.FederationDo(t, "POST", "/_matrix/key/v2/query", map[string]any{"server_keys": map[string]any{b.Config.ServerName: map[string]any{}}}).OK(t)["server_keys"].([]any)
	raw, _ := json.Marshal(keys)
	if len(keys) != 1 || signutil.VerifyJSON(b.Config.ServerName, bKeyID, bKey, json.RawMessage(raw[1:len(raw)-1])) != nil {
		t.Fatalf("B's own keys through its notary endpoint: %s", raw)
	}
}

func fmtBody(b any) string {
	s, _ := b.(string)
	return s
}

// TestWellKnownServer: /.well-known/matrix/server answers 404 while
// federation is off, and names the federation listener when it is on, on
// both listeners.
func TestWellKnownServer(t *testing.T) {
	off := testnode.Start(t, testnode.SQLite)
	off.Do(t, "GET", "/.well-known/matrix/server", "", nil, testnode.NoSpecCheck()).Want(t, 404, "M_NOT_FOUND")
	if off.FederationAddr != "" {
		t.Fatalf("federation listener open while federation is off: %s", off.FederationAddr)
	}
	ca := testnode.NewCA(t)
	on := testnode.StartFederating(t, testnode.SQLite, ca)
	for _, r := range []*testnode.Response{
		on.Do(t, "GET", "/.well-known/matrix/server", "", nil, testnode.NoSpecCheck()),
		on.FederationDo(t, "GET", "/.well-known/matrix/server", nil, testnode.NoSpecCheck()),
	} {
		if got := r.OK(t)["m.server"]; got != on.Config.ServerName {
			t.Fatalf("m.server = %v, want %s", got, on.Config.ServerName)
		}
	}
	v := on.FederationDo(t, "GET", "/_matrix/federation/v1/version", nil).OK(t)
	if v["server"].(map[string]any)["name"] != "Matrix OS" {
		t.Fatalf("version: %v", v)
	}
}

// TestNotaryMinimumValidUntil: the notary answers from its cache while the
// cached response is valid until minimum_valid_until_ts, and asks the
// server again when it is not, but not again at once when the server's
// answer could not satisfy the query.
func TestNotaryMinimumValidUntil(t *testing.T) {
	ca := testnode.NewCA(t)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	c := testnode.StartFederating(t, testnode.SQLite, ca)
	cName := c.Config.ServerName
	cKeyID, _, _ := serverKey(t, c)
	fetched := func() int64 {
		var ts int64
		if err := b.DB.QueryRow(context.Background(), `SELECT fetched_ts FROM federation_server_keys WHERE server_name = $1 AND key_id = $2`, cName, string(cKeyID)).Scan(&ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	query := func(minValid time.Time) {
		t.Helper()
		body := map[string]any{"server_keys": map[string]any{cName: map[string]any{string(cKeyID): map[string]any{"minimum_valid_until_ts": minValid.UnixMilli()}}}}
		if keys := b.FederationDo(t, "POST", "/_matrix/key/v2/query", body).OK(t)["server_keys"].([]any); len(keys) != 1 {
			t.Fatalf("notary answer for C: %v", keys)
		}
	}
	query(time.Now())
	first := fetched()
	time.Sleep(5 * time.Millisecond)
	query(time.Now().Add(time.Hour))
	if got := fetched(); got != first {
		t.Fatalf("refetched although the cached response is valid long enough (%d, then %d)", first, got)
	}
	query(time.Now().Add(fed.KeyValidity + time.Hour))
	second := fetched()
	if second <= first {
		t.Fatalf("not refetched although the cached response expires before the time asked (%d, then %d)", first, second)
	}
	// C's answer cannot satisfy that time either: asking again at once
	// does not make B fetch again.
	time.Sleep(5 * time.Millisecond)
	query(time.Now().Add(fed.KeyValidity + time.Hour))
	if got := fetched(); got != second {
		t.Fatalf("refetched right after a fetch that could not satisfy the query (%d, then %d)", second, got)
	}
	r := b.FederationDo(t, "GET", "/_matrix/key/v2/query/"+cName+"?minimum_valid_until_ts=1", nil).OK(t)
	if len(r["server_keys"].([]any)) != 1 {
		t.Fatalf("GET with an old minimum: %v", r)
	}
}
