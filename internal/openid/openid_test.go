package openid_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

func call(t *testing.T, method, u, token, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	pu, _ := url.Parse(u)
	if err := spectest.LoadDefault(t).ValidateResponse(method, pu.Path, res.StatusCode, raw); err != nil && !errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: %v\n%s", method, pu.Path, err, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: %d %s", method, u, res.StatusCode, raw)
	}
	return res.StatusCode, m
}

func TestOpenIDTokens(t *testing.T) {
	for _, e := range testnode.Engines {
		t.Run(string(e), func(t *testing.T) {
			n := testnode.Start(t, e)
			alice, bob := n.Register("alice"), n.Register("bob")
			reqPath := n.URL + "/_matrix/client/v3/user/" + url.PathEscape(string(alice.UserID)) + "/openid/request_token"
			st, body := call(t, "POST", reqPath, alice.AccessToken, "{}")
			tok, _ := body["access_token"].(string)
			if st != 200 || tok == "" || body["token_type"] != "Bearer" || body["matrix_server_name"] != "localhost" || body["expires_in"] != 3600.0 {
				t.Fatalf("request_token: %d %v", st, body)
			}
			// Only for oneself.
			if st, body := call(t, "POST", reqPath, bob.AccessToken, "{}"); st != 403 || body["errcode"] != "M_FORBIDDEN" {
				t.Fatalf("bob asking for alice: %d %v", st, body)
			}
			// The third party checks it over federation.
			info := n.URL + "/_matrix/federation/v1/openid/userinfo?access_token="
			if st, body := call(t, "GET", info+url.QueryEscape(tok), "", ""); st != 200 || body["sub"] != string(alice.UserID) {
				t.Fatalf("userinfo: %d %v", st, body)
			}
			if st, body := call(t, "GET", info+"bogus", "", ""); st != 401 || body["errcode"] != "M_UNKNOWN_TOKEN" {
				t.Fatalf("userinfo with a bad token: %d %v", st, body)
			}
			// The access token itself is no OpenID token.
			if st, _ := call(t, "GET", info+alice.AccessToken, "", ""); st != 401 {
				t.Fatalf("access token accepted as OpenID token")
			}
			// Tokens survive a restart.
			n = n.Restart()
			if st, body := call(t, "GET", n.URL+"/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(tok), "", ""); st != 200 || body["sub"] != string(alice.UserID) {
				t.Fatalf("userinfo after restart: %d %v", st, body)
			}
		})
	}
}
