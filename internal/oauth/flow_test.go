package oauth_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAuthMetadata checks the server metadata against the spec's schema
// and the values the Matrix profile requires.
func TestAuthMetadata(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	m := n.Do(t, "GET", "/_matrix/client/v1/auth_metadata", "", nil).OK(t)
	if m["issuer"] != n.URL+"/" {
		t.Errorf("issuer %v, want %s/", m["issuer"], n.URL)
	}
	for field, want := range map[string]string{
		"authorization_endpoint":        "/oauth2/authorize",
		"token_endpoint":                "/oauth2/token",
		"registration_endpoint":         "/oauth2/register",
		"revocation_endpoint":           "/oauth2/revoke",
		"device_authorization_endpoint": "/oauth2/device_authorization",
		"account_management_uri":        "/account",
	} {
		if m[field] != n.URL+want {
			t.Errorf("%s = %v, want %s", field, m[field], n.URL+want)
		}
	}
	for field, want := range map[string][]string{
		"response_types_supported":             {"code"},
		"grant_types_supported":                {"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
		"response_modes_supported":             {"query", "fragment"},
		"code_challenge_methods_supported":     {"S256"},
		"prompt_values_supported":              {"create"},
		"account_management_actions_supported": {"org.matrix.profile", "org.matrix.devices_list", "org.matrix.device_view", "org.matrix.device_delete", "org.matrix.account_deactivate", "org.matrix.cross_signing_reset"},
	} {
		got := strings.Fields(strings.Trim(strings.ReplaceAll(toString(m[field]), ",", " "), "[]"))
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s = %v, lacks %s", field, m[field], w)
			}
		}
	}
	// The same document at the issuer's RFC 8414 and OpenID Connect
	// discovery addresses, where OIDC libraries look.
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"} {
		if got := n.Do(t, "GET", path, "", nil, testnode.NoSpecCheck()).OK(t); got["issuer"] != m["issuer"] || got["token_endpoint"] != m["token_endpoint"] {
			t.Errorf("%s: %v", path, got)
		}
	}
	closed := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.OpenRegistration, c.RegistrationTokens = false, false })
	if m := closed.Do(t, "GET", "/_matrix/client/v1/auth_metadata", "", nil).OK(t); m["prompt_values_supported"] != nil {
		t.Errorf("closed registration advertises prompt values %v", m["prompt_values_supported"])
	}
}

// TestAuthIssuer checks MSC2965's earlier discovery, which Element Web's
// react-sdk 3.x and matrix-js-sdk 34 use: the issuer from auth_issuer, then
// the metadata from the OpenID Connect discovery document under it. Without
// it those clients offer only password login.
func TestAuthIssuer(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	got := n.Do(t, "GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", "", nil, testnode.NoSpecCheck()).OK(t)
	issuer, _ := got["issuer"].(string)
	if issuer != n.URL+"/" {
		t.Fatalf("auth_issuer = %v, want issuer %s/", got, n.URL)
	}
	discovery, err := url.JoinPath(issuer, ".well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	m := n.Do(t, "GET", strings.TrimPrefix(discovery, n.URL), "", nil, testnode.NoSpecCheck()).OK(t)
	if m["issuer"] != issuer || m["authorization_endpoint"] != n.URL+"/oauth2/authorize" {
		t.Errorf("discovery document at the issuer: %v", m)
	}
}

func toString(v any) string {
	var b strings.Builder
	if vs, ok := v.([]any); ok {
		for _, x := range vs {
			s, _ := x.(string)
			b.WriteString(s + " ")
		}
	}
	return b.String()
}

// TestAuthorizationCodeFlow logs in as a client would: register, follow
// the login and consent pages with a cookie jar, exchange the code with
// its PKCE verifier, use the token, rotate the refresh token (a reused
// one ends the session), and revoke.
func TestAuthorizationCodeFlow(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		clientID := webClient(t, n)
		b := newBrowser(t, n)
		verifier, challenge := pkce()

		p := b.get(authorizeURL(n, clientID, challenge, "OAUTHDEVICE1", nil))
		if p.status != http.StatusOK || !strings.Contains(p.url, "/oauth2/login") {
			t.Fatalf("authorize did not lead to the login page: %d %s", p.status, p.url)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
			if p.header.Get(h) == "" {
				t.Errorf("login page lacks %s", h)
			}
		}
		if !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || p.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("login page may be framed: %v", p.header)
		}
		wrong := b.login(p, alice.UserID.Localpart(), "wrong password")
		if wrong.status != http.StatusForbidden || !strings.Contains(wrong.body, "invalid username or password") {
			t.Fatalf("wrong password: %d %s", wrong.status, wrong.body)
		}
		p = b.login(wrong, alice.UserID.Localpart(), testnode.Password)
		if !strings.Contains(p.url, "/oauth2/consent") || !strings.Contains(p.body, "Test App") || !strings.Contains(p.body, "OAUTHDEVICE1") {
			t.Fatalf("after login: %d %s\n%s", p.status, p.url, p.body)
		}
		if !strings.Contains(p.header.Get("Content-Security-Policy"), "form-action 'self' https://app.example.test") {
			t.Errorf("consent CSP %q does not let the form reach the redirect URI", p.header.Get("Content-Security-Policy"))
		}
		q := callback(t, b.submit(p, "/oauth2/consent", url.Values{"decision": {"allow"}}))
		code := q.Get("code")
		if q.Get("state") != "state-123" || code == "" {
			t.Fatalf("callback %v", q)
		}

		status, tok := exchange(t, n, clientID, code, verifier)
		if status != http.StatusOK || tok["token_type"] != "Bearer" || tok["access_token"] == nil || tok["refresh_token"] == nil {
			t.Fatalf("token exchange: %d %v", status, tok)
		}
		// OAuth access tokens expire (an hour without access_token_lifetime).
		if tok["expires_in"] != float64(3600) {
			t.Errorf("expires_in %v, want 3600", tok["expires_in"])
		}
		if scope, _ := tok["scope"].(string); !strings.Contains(scope, "urn:matrix:client:device:OAUTHDEVICE1") || !strings.Contains(scope, "urn:matrix:client:api:*") {
			t.Errorf("granted scope %q", scope)
		}
		access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)
		if _, who := whoami(t, n, access); who["user_id"] != string(alice.UserID) || who["device_id"] != "OAUTHDEVICE1" {
			t.Fatalf("whoami with the OAuth token: %v", who)
		}
		// A code is single-use: a second exchange fails and ends the
		// session the first started.
		status, again := exchange(t, n, clientID, code, verifier)
		wantOAuthError(t, status, again, http.StatusBadRequest, "invalid_grant")
		if status, _ := whoami(t, n, access); status != http.StatusUnauthorized {
			t.Fatalf("session of a reused code still works: %d", status)
		}

		// Start again; then rotate the refresh token.
		verifier, challenge = pkce()
		code = b.authorize(clientID, challenge, "OAUTHDEVICE1", "")
		status, tok = exchange(t, n, clientID, code, verifier)
		if status != http.StatusOK {
			t.Fatalf("second exchange: %d %v", status, tok)
		}
		access, refresh = tok["access_token"].(string), tok["refresh_token"].(string)
		refreshForm := func(rt string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}
		}
		// The legacy /refresh does not take an OAuth session's token: it
		// would rotate it without reuse detection.
		n.Do(t, "POST", "/_matrix/client/v3/refresh", "", map[string]any{"refresh_token": refresh}).Want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		status, rotated := postForm(t, n, "/oauth2/token", refreshForm(refresh))
		if status != http.StatusOK || rotated["refresh_token"] == refresh || rotated["access_token"] == access {
			t.Fatalf("refresh: %d %v", status, rotated)
		}
		if rotated["expires_in"] != float64(3600) {
			t.Errorf("refreshed expires_in %v, want 3600", rotated["expires_in"])
		}
		newAccess := rotated["access_token"].(string)
		if _, who := whoami(t, n, newAccess); who["device_id"] != "OAUTHDEVICE1" {
			t.Fatalf("whoami after refresh: %v", who)
		}
		if status, _ := whoami(t, n, access); status != http.StatusUnauthorized {
			t.Errorf("the access token before the refresh still works: %d", status)
		}
		other := registerClient(t, n, map[string]any{"client_uri": appURI, "redirect_uris": []string{appURI + "cb"}, "grant_types": []string{"authorization_code", "refresh_token"}})
		status, body := postForm(t, n, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rotated["refresh_token"].(string)}, "client_id": {other}})
		wantOAuthError(t, status, body, http.StatusBadRequest, "invalid_grant")
		// The old refresh token again: the sign of a stolen copy.
		status, body = postForm(t, n, "/oauth2/token", refreshForm(refresh))
		wantOAuthError(t, status, body, http.StatusBadRequest, "invalid_grant")
		if status, _ := whoami(t, n, newAccess); status != http.StatusUnauthorized {
			t.Fatalf("session survived the reuse of a refresh token: %d", status)
		}

		// Revocation ends the session; an unknown token is fine.
		verifier, challenge = pkce()
		code = b.authorize(clientID, challenge, "OAUTHDEVICE2", "")
		_, tok = exchange(t, n, clientID, code, verifier)
		access = tok["access_token"].(string)
		if status, body := postForm(t, n, "/oauth2/revoke", url.Values{"token": {access}, "client_id": {other}}); status != http.StatusBadRequest {
			t.Fatalf("another client revoked the token: %d %v", status, body)
		}
		if status, _ := whoami(t, n, access); status != http.StatusOK {
			t.Fatalf("token gone after a refused revocation: %d", status)
		}
		for range 2 {
			if status, body := postForm(t, n, "/oauth2/revoke", url.Values{"token": {access}, "token_type_hint": {"access_token"}, "client_id": {clientID}}); status != http.StatusOK {
				t.Fatalf("revoke: %d %v", status, body)
			}
		}
		if status, _ := whoami(t, n, access); status != http.StatusUnauthorized {
			t.Fatalf("revoked token still works: %d", status)
		}
		// Password login keeps working beside OAuth.
		if _, who := whoami(t, n, n.Login(alice.UserID).AccessToken); who["user_id"] != string(alice.UserID) {
			t.Fatalf("password login after OAuth: %v", who)
		}
	})
}

// TestAuthorizeRefusals checks that bad requests are refused without
// sending anything to an unregistered address, and that the token
// endpoint holds the code to its request.
func TestAuthorizeRefusals(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	clientID := webClient(t, n)
	_, challenge := pkce()
	b := newBrowser(t, n)

	for name, extra := range map[string]url.Values{
		"unknown client":          {"client_id": {"nope"}},
		"unregistered redirect":   {"redirect_uri": {"https://evil.example/cb"}},
		"redirect on subpath":     {"redirect_uri": {appURI + "cb/x"}},
		"redirect with new query": {"redirect_uri": {appURI + "cb?x=1"}},
	} {
		p := b.get(authorizeURL(n, clientID, challenge, "DEV", extra))
		if p.status != http.StatusBadRequest || p.location != "" {
			t.Errorf("%s: status %d, location %q; want a 400 page and no redirect", name, p.status, p.location)
		}
	}
	for name, c := range map[string]struct {
		extra url.Values
		code  string
	}{
		"no PKCE":           {url.Values{"code_challenge": {""}, "code_challenge_method": {""}}, "invalid_request"},
		"plain PKCE":        {url.Values{"code_challenge_method": {"plain"}}, "invalid_request"},
		"token response":    {url.Values{"response_type": {"token"}}, "unsupported_response_type"},
		"no API scope":      {url.Values{"scope": {"urn:matrix:client:device:ABCDEFGHIJ"}}, "invalid_scope"},
		"bad device ID":     {url.Values{"scope": {"urn:matrix:client:api:* urn:matrix:client:device:a/b"}}, "invalid_scope"},
		"bad response mode": {url.Values{"response_mode": {"form_post"}}, "invalid_request"},
	} {
		q := callback(t, b.get(authorizeURL(n, clientID, challenge, "DEV", c.extra)))
		if q.Get("error") != c.code || q.Get("state") != "state-123" {
			t.Errorf("%s: callback %v, want error %s with the state", name, q, c.code)
		}
	}
	// response_mode=fragment puts the answer in the fragment.
	p := b.get(authorizeURL(n, clientID, challenge, "DEV", url.Values{"response_mode": {"fragment"}, "response_type": {"token"}}))
	if u, err := url.Parse(p.location); err != nil || u.RawQuery != "" || !strings.Contains(u.Fragment, "error=unsupported_response_type") {
		t.Errorf("fragment response mode: location %q", p.location)
	}
	if p.header.Get("Cache-Control") != "no-store" {
		t.Errorf("fragment response mode: Cache-Control %q, want no-store", p.header.Get("Cache-Control"))
	}

	// Forms without the session's CSRF token are refused.
	login := b.get(authorizeURL(n, clientID, challenge, "DEV", nil))
	fields, _ := formFields(login.body, "/oauth2/login")
	fields.Set("username", alice.UserID.Localpart())
	fields.Set("password", testnode.Password)
	for name, csrf := range map[string]string{"missing": "", "wrong": "not-the-token"} {
		f := url.Values{}
		for k, v := range fields {
			f[k] = v
		}
		f.Set("csrf", csrf)
		if p := b.do(http.MethodPost, n.URL+"/oauth2/login", f); p.status != http.StatusForbidden {
			t.Errorf("login with %s CSRF token: %d", name, p.status)
		}
	}
	consent := b.login(login, alice.UserID.Localpart(), testnode.Password)
	other := newBrowser(t, n)
	otherLogin := other.get(n.URL + "/oauth2/login")
	otherFields, _ := formFields(otherLogin.body, "/oauth2/login")
	f, _ := formFields(consent.body, "/oauth2/consent")
	f.Set("csrf", otherFields.Get("csrf"))
	f.Set("decision", "allow")
	if p := b.do(http.MethodPost, n.URL+"/oauth2/consent", f); p.status != http.StatusForbidden || p.location != "" {
		t.Errorf("consent with another browser's CSRF token: %d %q", p.status, p.location)
	}

	// No open redirect after login.
	for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		p := b.get(n.URL + "/oauth2/login?next=" + url.QueryEscape(next))
		if p.location != "" || !strings.HasSuffix(p.url, "/account") {
			t.Errorf("next=%q led to %q %q", next, p.url, p.location)
		}
	}

	// The token endpoint holds the code to its client, redirect URI and
	// verifier.
	verifier, challenge := pkce()
	code := b.authorize(clientID, challenge, "DEV1", "")
	for name, form := range map[string]url.Values{
		"wrong verifier": {"code_verifier": {strings.Repeat("a", 43)}},
		"no verifier":    {"code_verifier": {""}},
		"wrong redirect": {"redirect_uri": {appURI + "other"}},
	} {
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appURI + "cb"}, "client_id": {clientID}, "code_verifier": {verifier}}
		for k, v := range form {
			f[k] = v
		}
		if status, body := postForm(t, n, "/oauth2/token", f); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v, want 400 invalid_grant", name, status, body)
		}
		// Each try spends the code; get a fresh one.
		verifier, challenge = pkce()
		code = b.authorize(clientID, challenge, "DEV1", "")
	}
	status, body := postForm(t, n, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appURI + "cb"}, "client_id": {"nope"}, "code_verifier": {verifier}})
	wantOAuthError(t, status, body, http.StatusUnauthorized, "invalid_client")
	status, body = postForm(t, n, "/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {clientID}})
	wantOAuthError(t, status, body, http.StatusBadRequest, "unsupported_grant_type")
	status, body = postForm(t, n, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {"made-up"}, "redirect_uri": {appURI + "cb"}, "client_id": {clientID}, "code_verifier": {verifier}})
	wantOAuthError(t, status, body, http.StatusBadRequest, "invalid_grant")
	if status, body := exchange(t, n, clientID, code, verifier); status != http.StatusOK {
		t.Fatalf("a good exchange after the refusals: %d %v", status, body)
	}

	// Denying consent tells the client so.
	_, challenge = pkce()
	p = b.get(authorizeURL(n, clientID, challenge, "DEV2", nil))
	if q := callback(t, b.submit(p, "/oauth2/consent", url.Values{"decision": {"deny"}})); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Errorf("deny: callback %v", q)
	}
}

// TestCodeSurvivesBadExchanges checks that a token request with a leaked
// code but the wrong client, redirect URI or verifier is refused without
// using the code up or ending the session it started, and that a second
// exchange of a redeemed code with the right verifier still ends it.
func TestCodeSurvivesBadExchanges(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	clientID := webClient(t, n)
	other := webClient(t, n)
	verifier, challenge := pkce()
	wrongVerifier, _ := pkce()
	code := newBrowser(t, n).authorize(clientID, challenge, "LEAKED1", alice.UserID.Localpart())

	badAttempts := func(when string) {
		t.Helper()
		for name, form := range map[string]url.Values{
			"wrong verifier":     {"client_id": {clientID}, "redirect_uri": {appURI + "cb"}, "code_verifier": {wrongVerifier}},
			"no verifier":        {"client_id": {clientID}, "redirect_uri": {appURI + "cb"}},
			"other client":       {"client_id": {other}, "redirect_uri": {appURI + "cb"}, "code_verifier": {verifier}},
			"other redirect uri": {"client_id": {clientID}, "redirect_uri": {appURI + "other"}, "code_verifier": {verifier}},
		} {
			form.Set("grant_type", "authorization_code")
			form.Set("code", code)
			status, body := postForm(t, n, "/oauth2/token", form)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" || strings.Contains(body["error_description"].(string), "already used") {
				t.Fatalf("%s, %s: %d %v", when, name, status, body)
			}
		}
	}
	badAttempts("before the exchange")
	status, tok := exchange(t, n, clientID, code, verifier)
	if status != http.StatusOK {
		t.Fatalf("exchange after refused attempts: %d %v", status, tok)
	}
	access := tok["access_token"].(string)
	badAttempts("after the exchange")
	if status, _ := whoami(t, n, access); status != http.StatusOK {
		t.Fatalf("refused attempts with the redeemed code ended its session: %d", status)
	}
	status, again := exchange(t, n, clientID, code, verifier)
	wantOAuthError(t, status, again, http.StatusBadRequest, "invalid_grant")
	if status, _ := whoami(t, n, access); status != http.StatusUnauthorized {
		t.Fatalf("session of a code redeemed twice still works: %d", status)
	}
}
