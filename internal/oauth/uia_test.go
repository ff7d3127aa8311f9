package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

const upload = "/_matrix/client/v3/keys/device_signing/upload"

// oauthKeysSession signs alice in through the OAuth flow in a browser
// and uploads a first master key for that session (which needs no UIA).
// master builds an upload of another master key with an auth dict.
func oauthKeysSession(t *testing.T) (n *testnode.Node, alice *mautrix.Client, b *browser, token string, master func(pub string, auth map[string]any) map[string]any) {
	t.Helper()
	n = testnode.Start(t, testnode.SQLite)
	alice = n.Register("alice")
	clientID := webClient(t, n)
	b = newBrowser(t, n)
	verifier, challenge := pkce()
	p := b.get(authorizeURL(n, clientID, challenge, "XSIGNDEV01", nil))
	p = b.login(p, alice.UserID.Localpart(), testnode.Password)
	code := callback(t, b.submit(p, "/oauth2/consent", url.Values{"decision": {"allow"}})).Get("code")
	status, tok := exchange(t, n, clientID, code, verifier)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	token = tok["access_token"].(string)
	master = func(pub string, auth map[string]any) map[string]any {
		body := map[string]any{"master_key": map[string]any{
			"user_id": alice.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:" + pub: pub},
		}}
		if auth != nil {
			body["auth"] = auth
		}
		return body
	}
	n.Do(t, "POST", upload, token, master("firstmasterkey", nil)).OK(t)
	return n, alice, b, token, master
}

// TestCrossSigningResetWithOAuthUIA replaces the cross-signing keys of an
// OAuth session through the m.oauth stage: the 401 points at the account
// page, the user approves the reset there, and the retried upload goes
// through, once. A password session still authenticates with its password.
func TestCrossSigningResetWithOAuthUIA(t *testing.T) {
	n, alice, b, token, master := oauthKeysSession(t)

	uia := n.Do(t, "POST", upload, token, master("secondmasterkey", nil)).Want(t, http.StatusUnauthorized, "").JSON(t)
	flows, _ := uia["flows"].([]any)
	if len(flows) != 2 || toString(flows[1].(map[string]any)["stages"]) != "m.oauth " {
		t.Fatalf("flows for an OAuth session: %v", uia["flows"])
	}
	params, _ := uia["params"].(map[string]any)
	oauthParams, _ := params["m.oauth"].(map[string]any)
	resetURL, _ := oauthParams["url"].(string)
	if resetURL != n.URL+"/account?action=org.matrix.cross_signing_reset" {
		t.Fatalf("m.oauth params %v", params)
	}
	session := uia["session"].(string)
	retry := map[string]any{"type": "m.oauth", "session": session}
	if r := n.Do(t, "POST", upload, token, master("secondmasterkey", retry)); r.Status != http.StatusUnauthorized {
		t.Fatalf("upload before the approval: %d %s", r.Status, r.Body)
	}

	page := b.get(resetURL)
	if page.status != http.StatusOK || !strings.Contains(page.body, "Reset your identity") {
		t.Fatalf("reset page: %d\n%s", page.status, page.body)
	}
	if done := b.submit(page, "/account/cross-signing-reset", nil); done.status != http.StatusOK || !strings.Contains(done.body, "Reset approved") {
		t.Fatalf("approve reset: %d\n%s", done.status, done.body)
	}
	n.Do(t, "POST", upload, token, master("secondmasterkey", retry)).OK(t)

	// The approval was for one reset.
	uia = n.Do(t, "POST", upload, token, master("thirdmasterkey", nil)).Want(t, http.StatusUnauthorized, "").JSON(t)
	retry = map[string]any{"type": "m.oauth", "session": uia["session"]}
	if r := n.Do(t, "POST", upload, token, master("thirdmasterkey", retry)); r.Status != http.StatusUnauthorized {
		t.Fatalf("a second reset on one approval: %d %s", r.Status, r.Body)
	}
	// A password session keeps the password stage.
	uia = n.Do(t, "POST", upload, alice.AccessToken, master("thirdmasterkey", nil)).Want(t, http.StatusUnauthorized, "").JSON(t)
	if stages := toString(uia["flows"].([]any)[0].(map[string]any)["stages"]); !strings.Contains(stages, "m.login.password") {
		t.Fatalf("flows for a password session: %v", uia["flows"])
	}
}

// TestCrossSigningResetUnstableStage is the reset as clients written
// before m.oauth do it (Element Web on matrix-react-sdk 3.x, which knows
// the stage by its unstable name org.matrix.cross_signing_reset and takes
// the first flow): they open the stage's url, and once the user approved
// the reset there, retry with only the UIA session.
func TestCrossSigningResetUnstableStage(t *testing.T) {
	n, _, b, token, master := oauthKeysSession(t)

	uia := n.Do(t, "POST", upload, token, master("secondmasterkey", nil)).Want(t, http.StatusUnauthorized, "").JSON(t)
	flows, _ := uia["flows"].([]any)
	if len(flows) != 2 || toString(flows[0].(map[string]any)["stages"]) != toString([]any{"org.matrix.cross_signing_reset"}) ||
		toString(flows[1].(map[string]any)["stages"]) != toString([]any{"m.oauth"}) {
		t.Fatalf("flows for an OAuth session: %v", uia["flows"])
	}
	params, _ := uia["params"].(map[string]any)
	for _, stage := range []string{"org.matrix.cross_signing_reset", "m.oauth"} {
		if p, _ := params[stage].(map[string]any); p["url"] != n.URL+"/account?action=org.matrix.cross_signing_reset" {
			t.Fatalf("params of %s: %v", stage, params)
		}
	}
	retry := map[string]any{"session": uia["session"]}
	if r := n.Do(t, "POST", upload, token, master("secondmasterkey", retry)); r.Status != http.StatusUnauthorized {
		t.Fatalf("upload before the approval: %d %s", r.Status, r.Body)
	}
	page := b.get(n.URL + "/account?action=org.matrix.cross_signing_reset")
	if done := b.submit(page, "/account/cross-signing-reset", nil); done.status != http.StatusOK {
		t.Fatalf("approve reset: %d\n%s", done.status, done.body)
	}
	n.Do(t, "POST", upload, token, master("secondmasterkey", retry)).OK(t)
	// A session-only retry on a new session without an approval is refused.
	uia = n.Do(t, "POST", upload, token, master("thirdmasterkey", nil)).Want(t, http.StatusUnauthorized, "").JSON(t)
	if r := n.Do(t, "POST", upload, token, master("thirdmasterkey", map[string]any{"session": uia["session"]})); r.Status != http.StatusUnauthorized {
		t.Fatalf("a second reset on one approval: %d %s", r.Status, r.Body)
	}
}
