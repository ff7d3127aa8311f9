package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestClientRegistration applies the spec's client metadata and redirect
// URI rules.
func TestClientRegistration(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	base := func(over map[string]any) map[string]any {
		m := map[string]any{"client_uri": "https://example.com/", "redirect_uris": []string{"https://example.com/cb"}}
		for k, v := range over {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name string
		meta map[string]any
		want string // "" for success, else the RFC 7591 error
	}{
		{"web", base(nil), ""},
		{"web on a subdomain", base(map[string]any{"redirect_uris": []string{"https://app.example.com/cb"}}), ""},
		{"native private-use scheme", base(map[string]any{"application_type": "native", "redirect_uris": []string{"com.example.app:/callback"}}), ""},
		{"native subdomain scheme", base(map[string]any{"application_type": "native", "redirect_uris": []string{"com.example.app.beta:/cb"}}), ""},
		{"native loopback", base(map[string]any{"application_type": "native", "redirect_uris": []string{"http://127.0.0.1/cb", "http://localhost:8080/cb", "http://[::1]/cb"}}), ""},
		{"device grant only", base(map[string]any{"redirect_uris": nil, "grant_types": []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"}}), ""},
		{"unknown grant types ignored", base(map[string]any{"grant_types": []string{"authorization_code", "implicit-ish"}}), ""},
		{"web client served from loopback", map[string]any{"client_uri": "http://localhost:8080/", "redirect_uris": []string{"http://localhost:8080/", "http://localhost:9000/cb"}}, ""},
		{"loopback web client redirecting off its host", map[string]any{"client_uri": "http://localhost:8080/", "redirect_uris": []string{"http://127.0.0.1:8080/"}}, "invalid_redirect_uri"},
		{"loopback web client with an http logo elsewhere", map[string]any{"client_uri": "http://localhost:8080/", "redirect_uris": []string{"http://localhost:8080/"}, "logo_uri": "http://example.com/l.png"}, "invalid_client_metadata"},
		{"no client_uri", map[string]any{"redirect_uris": []string{"https://example.com/cb"}}, "invalid_client_metadata"},
		{"http client_uri", base(map[string]any{"client_uri": "http://example.com/"}), "invalid_client_metadata"},
		{"client_uri with user", base(map[string]any{"client_uri": "https://u:p@example.com/"}), "invalid_client_metadata"},
		{"confidential client", base(map[string]any{"token_endpoint_auth_method": "client_secret_basic"}), "invalid_client_metadata"},
		{"unknown application type", base(map[string]any{"application_type": "desktop"}), "invalid_client_metadata"},
		{"logo on another host", base(map[string]any{"logo_uri": "https://other.example/logo.png"}), "invalid_client_metadata"},
		{"tos over http", base(map[string]any{"tos_uri": "http://example.com/tos"}), "invalid_client_metadata"},
		{"no redirect URI", base(map[string]any{"redirect_uris": []string{}}), "invalid_redirect_uri"},
		{"redirect on another host", base(map[string]any{"redirect_uris": []string{"https://evil.com/cb"}}), "invalid_redirect_uri"},
		{"redirect on a look-alike host", base(map[string]any{"redirect_uris": []string{"https://notexample.com/cb"}}), "invalid_redirect_uri"},
		{"web loopback", base(map[string]any{"redirect_uris": []string{"http://127.0.0.1/cb"}}), "invalid_redirect_uri"},
		{"redirect with fragment", base(map[string]any{"redirect_uris": []string{"https://example.com/cb#x"}}), "invalid_redirect_uri"},
		{"redirect with user", base(map[string]any{"redirect_uris": []string{"https://evil.com@example.com/cb"}}), "invalid_redirect_uri"},
		{"native http elsewhere", base(map[string]any{"application_type": "native", "redirect_uris": []string{"http://example.com/cb"}}), "invalid_redirect_uri"},
		{"native foreign scheme", base(map[string]any{"application_type": "native", "redirect_uris": []string{"com.evil.app:/cb"}}), "invalid_redirect_uri"},
		{"native scheme with authority", base(map[string]any{"application_type": "native", "redirect_uris": []string{"com.example.app://cb"}}), "invalid_redirect_uri"},
		{"native scheme without a dot", base(map[string]any{"application_type": "native", "redirect_uris": []string{"myapp:/cb"}}), "invalid_redirect_uri"},
	} {
		r := n.Do(t, "POST", "/oauth2/register", "", c.meta, testnode.NoSpecCheck())
		m := r.JSON(t)
		if c.want == "" {
			if r.Status != http.StatusCreated || m["client_id"] == nil || m["token_endpoint_auth_method"] != "none" {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
			}
			continue
		}
		if r.Status != http.StatusBadRequest || m["error"] != c.want {
			t.Errorf("%s: %d %s, want 400 %s", c.name, r.Status, r.Body, c.want)
		}
	}
	if r := n.Do(t, "POST", "/oauth2/register", "", "not json", testnode.NoSpecCheck()); r.Status != http.StatusBadRequest || r.JSON(t)["error"] != "invalid_client_metadata" {
		t.Errorf("not JSON: %d %s", r.Status, r.Body)
	}
}

// TestNativeLoopbackRedirectAnyPort lets a native client's loopback
// redirect URI match with any port, as RFC 8252 requires, and nothing
// else.
func TestNativeLoopbackRedirectAnyPort(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	n.Register("alice")
	clientID := registerClient(t, n, map[string]any{"client_uri": "https://example.com/", "application_type": "native",
		"redirect_uris": []string{"http://127.0.0.1/cb"}})
	_, challenge := pkce()
	b := newBrowser(t, n)
	for uri, ok := range map[string]bool{
		"http://127.0.0.1:53111/cb": true,
		"http://127.0.0.1/cb":       true,
		"http://127.0.0.1:53111/x":  false,
		"http://localhost:53111/cb": false,
	} {
		p := b.get(authorizeURL(n, clientID, challenge, "DEV", url.Values{"redirect_uri": {uri}}))
		if accepted := p.status == http.StatusOK && strings.Contains(p.url, "/oauth2/login"); accepted != ok {
			t.Errorf("redirect_uri %s: status %d at %s, accepted %v, want %v", uri, p.status, p.url, accepted, ok)
		}
	}
}

// TestDeviceGrant runs the device authorization grant: the device polls
// while the user types its code on the device page and allows it.
func TestDeviceGrant(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		clientID := webClient(t, n)
		status, da := postForm(t, n, "/oauth2/device_authorization", url.Values{"client_id": {clientID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:TVDEVICE01"}})
		if status != http.StatusOK || da["device_code"] == nil || da["user_code"] == nil || da["verification_uri"] != n.URL+"/oauth2/device" {
			t.Fatalf("device authorization: %d %v", status, da)
		}
		poll := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da["device_code"].(string)}, "client_id": {clientID}}
		status, body := postForm(t, n, "/oauth2/token", poll)
		wantOAuthError(t, status, body, http.StatusBadRequest, "authorization_pending")
		status, body = postForm(t, n, "/oauth2/token", poll)
		wantOAuthError(t, status, body, http.StatusBadRequest, "slow_down")

		b := newBrowser(t, n)
		p := b.get(n.URL + "/oauth2/device")
		p = b.login(p, alice.UserID.Localpart(), testnode.Password)
		bad := b.submit(p, "/oauth2/device", url.Values{"user_code": {"BBBB-BBBB"}})
		if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "not valid") {
			t.Fatalf("unknown user code: %d", bad.status)
		}
		// Typed in lower case, without the dash.
		typed := strings.ToLower(strings.ReplaceAll(da["user_code"].(string), "-", ""))
		consent := b.submit(p, "/oauth2/device", url.Values{"user_code": {typed}})
		if consent.status != http.StatusOK || !strings.Contains(consent.body, "Test App") || !strings.Contains(consent.body, da["user_code"].(string)) {
			t.Fatalf("device consent page: %d\n%s", consent.status, consent.body)
		}
		done := b.submit(consent, "/oauth2/device", url.Values{"decision": {"allow"}})
		if done.status != http.StatusOK || !strings.Contains(done.body, "Device connected") {
			t.Fatalf("allow device: %d\n%s", done.status, done.body)
		}
		status, tok := postForm(t, n, "/oauth2/token", poll)
		if status != http.StatusOK {
			t.Fatalf("device token: %d %v", status, tok)
		}
		if _, who := whoami(t, n, tok["access_token"].(string)); who["user_id"] != string(alice.UserID) || who["device_id"] != "TVDEVICE01" {
			t.Fatalf("whoami with the device's token: %v", who)
		}
		status, body = postForm(t, n, "/oauth2/token", poll)
		wantOAuthError(t, status, body, http.StatusBadRequest, "expired_token")

		// A denied grant answers access_denied, through the link with
		// the code in it.
		_, da = postForm(t, n, "/oauth2/device_authorization", url.Values{"client_id": {clientID}, "scope": {"urn:matrix:client:api:*"}})
		consent = b.get(da["verification_uri_complete"].(string))
		b.submit(consent, "/oauth2/device", url.Values{"decision": {"deny"}})
		poll.Set("device_code", da["device_code"].(string))
		status, body = postForm(t, n, "/oauth2/token", poll)
		wantOAuthError(t, status, body, http.StatusBadRequest, "access_denied")

		// A client that did not register the grant cannot start it.
		codeOnly := registerClient(t, n, map[string]any{"client_uri": appURI, "redirect_uris": []string{appURI + "cb"}})
		status, body = postForm(t, n, "/oauth2/device_authorization", url.Values{"client_id": {codeOnly}, "scope": {"urn:matrix:client:api:*"}})
		wantOAuthError(t, status, body, http.StatusBadRequest, "unauthorized_client")
	})
}

// TestSignupWithRegistrationToken creates an account through the pages
// (prompt=create) on a server that needs a registration token.
func TestSignupWithRegistrationToken(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.OpenRegistration, c.RegistrationTokens = false, true })
	uses := int64(1)
	tok, err := n.Accounts.CreateRegistrationToken(context.Background(), accounts.RegistrationToken{UsesAllowed: &uses})
	if err != nil {
		t.Fatal(err)
	}
	clientID := webClient(t, n)
	verifier, challenge := pkce()
	b := newBrowser(t, n)
	p := b.get(authorizeURL(n, clientID, challenge, "NEWDEVICE1", url.Values{"prompt": {"create"}}))
	if !strings.Contains(p.url, "/oauth2/signup") || !strings.Contains(p.body, `name="token"`) {
		t.Fatalf("prompt=create did not show the sign-up form with a token field: %s\n%s", p.url, p.body)
	}
	fill := url.Values{"username": {"newbie"}, "password": {"a long enough password"}, "password2": {"a long enough password"}, "token": {"wrong-token"}}
	wrong := b.submit(p, "/oauth2/signup", fill)
	if wrong.status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d\n%s", wrong.status, wrong.body)
	}
	fill.Set("password2", "something else")
	fill.Set("token", tok.Token)
	if mismatch := b.submit(wrong, "/oauth2/signup", fill); mismatch.status != http.StatusBadRequest {
		t.Fatalf("passwords that differ: %d", mismatch.status)
	}
	fill.Set("password2", "a long enough password")
	consent := b.submit(wrong, "/oauth2/signup", fill)
	if !strings.Contains(consent.url, "/oauth2/consent") {
		t.Fatalf("after sign-up: %d %s\n%s", consent.status, consent.url, consent.body)
	}
	code := callback(t, b.submit(consent, "/oauth2/consent", url.Values{"decision": {"allow"}})).Get("code")
	status, res := exchange(t, n, clientID, code, verifier)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, res)
	}
	if _, who := whoami(t, n, res["access_token"].(string)); who["user_id"] != "@newbie:localhost" {
		t.Fatalf("whoami of the new account: %v", who)
	}
	// The token had one use.
	b2 := newBrowser(t, n)
	p = b2.get(n.URL + "/oauth2/signup")
	fill.Set("username", "second")
	if again := b2.submit(p, "/oauth2/signup", fill); again.status != http.StatusUnauthorized {
		t.Fatalf("used-up token: %d", again.status)
	}

	closed := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.OpenRegistration, c.RegistrationTokens = false, false })
	if p := newBrowser(t, closed).get(closed.URL + "/oauth2/signup"); p.status != http.StatusForbidden {
		t.Fatalf("sign-up page with registration closed: %d", p.status)
	}
}

// TestAccountPage lists sessions, ends one, changes the display name and
// deactivates the account, through the account management page.
func TestAccountPage(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	phone := n.Login(alice.UserID)
	b := newBrowser(t, n)
	p := b.get(n.URL + "/account?action=org.matrix.device_view&device_id=" + string(phone.DeviceID))
	p = b.login(p, alice.UserID.Localpart(), testnode.Password)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Session "+string(phone.DeviceID)) || !strings.Contains(p.body, string(alice.DeviceID)) {
		t.Fatalf("account page: %d\n%s", p.status, p.body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if p.header.Get(h) == "" {
			t.Errorf("account page lacks %s", h)
		}
	}
	ended := b.submit(p, "/account/sessions/end", url.Values{"device_id": {string(phone.DeviceID)}})
	if ended.status != http.StatusOK || !strings.Contains(ended.body, "Session ended") {
		t.Fatalf("end session: %d", ended.status)
	}
	if status, _ := whoami(t, n, phone.AccessToken); status != http.StatusUnauthorized {
		t.Fatalf("ended session still works: %d", status)
	}
	if status, _ := whoami(t, n, alice.AccessToken); status != http.StatusOK {
		t.Fatalf("the other session was ended too: %d", status)
	}
	saved := b.submit(ended, "/account/profile", url.Values{"displayname": {"Alice Liddell"}})
	if name, _ := n.Accounts.DisplayName(context.Background(), alice.UserID); name != "Alice Liddell" || !strings.Contains(saved.body, "Profile saved") {
		t.Fatalf("display name %q after saving the profile", name)
	}
	// Forms from elsewhere (no CSRF token) change nothing.
	if p := b.do(http.MethodPost, n.URL+"/account/deactivate", url.Values{"confirm": {"yes"}, "password": {testnode.Password}}); p.status != http.StatusForbidden {
		t.Fatalf("deactivate without CSRF token: %d", p.status)
	}
	if p := b.submit(saved, "/account/deactivate", url.Values{"confirm": {"yes"}, "password": {"wrong"}}); p.status != http.StatusForbidden {
		t.Fatalf("deactivate with a wrong password: %d", p.status)
	}
	if p := b.submit(saved, "/account/deactivate", url.Values{"confirm": {"yes"}, "password": {testnode.Password}}); p.status != http.StatusOK {
		t.Fatalf("deactivate: %d\n%s", p.status, p.body)
	}
	u, _, err := n.Accounts.GetUser(context.Background(), alice.UserID)
	if err != nil || !u.Deactivated {
		t.Fatalf("account after deactivation: %+v, %v", u, err)
	}
	if p := b.get(n.URL + "/account"); !strings.Contains(p.url, "/oauth2/login") {
		t.Fatalf("the browser is still signed in after deactivation: %s", p.url)
	}
}

// TestLoginPageRateLimited counts the login page's password checks
// against the same limit as /login.
func TestLoginPageRateLimited(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) {
		c.RateLimit, c.RateLimitLoginPerMin, c.RateLimitLoginBurst = true, 1, 3
	})
	alice := n.Register("alice")
	b := newBrowser(t, n)
	p := b.get(n.URL + "/oauth2/login")
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		p = b.login(p, alice.UserID.Localpart(), "wrong")
		if p.status == http.StatusTooManyRequests {
			break
		}
		if p.status != http.StatusForbidden || i > 10 || time.Now().After(deadline) {
			t.Fatalf("attempt %d: status %d, want 403 until 429", i, p.status)
		}
	}
	// /login shares the limit.
	r := n.Do(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "user": alice.UserID.Localpart(), "password": testnode.Password})
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("/login after the page's guesses: %d", r.Status)
	}
}

// TestClientRegistrationRateLimited limits dynamic client registration
// per client IP, as /register is.
func TestClientRegistrationRateLimited(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) {
		c.RateLimit, c.RateLimitRegPerMin, c.RateLimitRegBurst = true, 1, 2
	})
	meta := map[string]any{"client_uri": appURI, "redirect_uris": []string{appURI + "cb"}}
	for i := range 2 {
		if r := n.Do(t, "POST", "/oauth2/register", "", meta, testnode.NoSpecCheck()); r.Status != http.StatusCreated {
			t.Fatalf("registration %d: %d %s", i, r.Status, r.Body)
		}
	}
	if r := n.Do(t, "POST", "/oauth2/register", "", meta, testnode.NoSpecCheck()); r.Status != http.StatusTooManyRequests {
		t.Fatalf("registration past the burst: %d %s", r.Status, r.Body)
	}
}

// TestPendingLoginsRateLimited limits per client IP the authorization
// requests and the browser sessions the pages start, which anyone can
// make the server keep, while a browser that has a session keeps using
// the pages.
func TestPendingLoginsRateLimited(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) {
		c.RateLimit, c.RateLimitRegPerMin, c.RateLimitRegBurst = true, 1, 4
	})
	clientID := webClient(t, n) // one registration request
	_, challenge := pkce()
	b := newBrowser(t, n)
	for i := range 3 {
		if p := b.get(authorizeURL(n, clientID, challenge, "DEV", nil)); p.status != http.StatusOK || !strings.Contains(p.url, "/oauth2/login") {
			t.Fatalf("authorization request %d: %d %s", i, p.status, p.url)
		}
	}
	p := b.get(authorizeURL(n, clientID, challenge, "DEV", nil))
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" {
		t.Fatalf("authorization request past the burst: %d %v", p.status, p.header)
	}
	if p := newBrowser(t, n).get(n.URL + "/oauth2/login"); p.status != http.StatusTooManyRequests {
		t.Fatalf("a new browser session past the burst: %d", p.status)
	}
	if p := b.get(n.URL + "/oauth2/login"); p.status != http.StatusOK {
		t.Fatalf("the login page for a browser with a session: %d", p.status)
	}
}

// TestSignOutOnConsentKeepsRequest: a browser still signed in as someone
// else (here: the account a previous app login used) that signs out on
// the consent page lands on the login page of the same request, and
// signing in there goes on to that request's consent, not to the
// account page.
func TestSignOutOnConsentKeepsRequest(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	bob := n.Register("bob")
	client := webClient(t, n)
	b := newBrowser(t, n)
	_, challenge := pkce()
	b.authorize(client, challenge, "FIRSTDEV", alice.UserID.Localpart())

	p := b.get(authorizeURL(n, client, challenge, "SECONDDEV", nil))
	if !strings.Contains(p.url, "/oauth2/consent") || !strings.Contains(p.body, string(alice.UserID)) {
		t.Fatalf("second login did not go straight to consent as alice: %s\n%s", p.url, p.body)
	}
	out := b.submit(p, "/oauth2/logout", nil)
	if !strings.Contains(out.url, "/oauth2/login") || !strings.Contains(out.url, "next=") {
		t.Fatalf("signing out on the consent page ended on %s, not a login page that goes on with the request", out.url)
	}
	p = b.login(out, bob.UserID.Localpart(), testnode.Password)
	if !strings.Contains(p.url, "/oauth2/consent") || !strings.Contains(p.body, string(bob.UserID)) {
		t.Fatalf("after signing in as bob: %s\n%s", p.url, p.body)
	}
	q := callback(t, b.submit(p, "/oauth2/consent", url.Values{"decision": {"allow"}}))
	if q.Get("code") == "" || q.Get("state") != "state-123" {
		t.Fatalf("callback %v: want a code and the state", q)
	}
	// Signing out anywhere else still ends on the plain login page.
	acct := b.get(n.URL + "/account")
	if out := b.submit(acct, "/oauth2/logout", nil); !strings.HasSuffix(out.url, "/oauth2/login") {
		t.Fatalf("signing out on the account page ended on %s", out.url)
	}
}
