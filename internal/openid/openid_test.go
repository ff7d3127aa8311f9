package openid_test

import (
	"net/url"
	"testing"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// call sends a request with the token and body and returns the answer's
// status and JSON object.
func call(t *testing.T, n *testnode.Node, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	var b any
	if body != "" {
		b = body
	}
	r := n.Do(t, method, path, token, b)
	return r.Status, r.JSON(t)
}

func TestOpenIDTokens(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		reqPath := "/_matrix/client/v3/user/" + url.PathEscape(string(alice.UserID)) + "/openid/request_token"
		st, body := call(t, n, "POST", reqPath, alice.AccessToken, "{}")
		tok, _ := body["access_token"].(string)
		if st != 200 || tok == "" || body["token_type"] != "Bearer" || body["matrix_server_name"] != "localhost" || body["expires_in"] != 3600.0 {
			t.Fatalf("request_token: %d %v", st, body)
		}
		// Only for oneself.
		if st, body := call(t, n, "POST", reqPath, bob.AccessToken, "{}"); st != 403 || body["errcode"] != "M_FORBIDDEN" {
			t.Fatalf("bob asking for alice: %d %v", st, body)
		}
		// The third party checks it over federation.
		info := "/_matrix/federation/v1/openid/userinfo?access_token="
		if st, body := call(t, n, "GET", info+url.QueryEscape(tok), "", ""); st != 200 || body["sub"] != string(alice.UserID) {
			t.Fatalf("userinfo: %d %v", st, body)
		}
		if st, body := call(t, n, "GET", info+"bogus", "", ""); st != 401 || body["errcode"] != "M_UNKNOWN_TOKEN" {
			t.Fatalf("userinfo with a bad token: %d %v", st, body)
		}
		// The access token itself is no OpenID token.
		if st, _ := call(t, n, "GET", info+alice.AccessToken, "", ""); st != 401 {
			t.Fatalf("access token accepted as OpenID token")
		}
		// Tokens survive a restart.
		n = n.Restart()
		if st, body := call(t, n, "GET", "/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(tok), "", ""); st != 200 || body["sub"] != string(alice.UserID) {
			t.Fatalf("userinfo after restart: %d %v", st, body)
		}
	})
}
