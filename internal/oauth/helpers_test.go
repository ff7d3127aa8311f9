package oauth_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// appURI is the test client's site; its redirect URI is appURI + "cb".
const appURI = "https://app.example.test/"

// browser is a user agent with a cookie jar that follows the node's own
// redirects and stops at any other, as a browser would hand it to the
// client app.
type browser struct {
	t    *testing.T
	n    *testnode.Node
	http *http.Client
}

func newBrowser(t *testing.T, n *testnode.Node) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return &browser{t: t, n: n, http: hc}
}

// pageResult is a page or redirect the browser ended on.
type pageResult struct {
	status   int
	header   http.Header
	body     string
	url      string
	location string // the off-node redirect it stopped at, if any
}

// do sends one request and follows redirects within the node.
func (b *browser) do(method, target string, form url.Values) *pageResult {
	b.t.Helper()
	for range 10 {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, target, body)
		if err != nil {
			b.t.Fatalf("%s %s: %v", method, target, err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		res, err := b.http.Do(req)
		if err != nil {
			b.t.Fatalf("%s %s: %v", method, target, err)
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			b.t.Fatalf("%s %s: read body: %v", method, target, err)
		}
		if res.StatusCode >= 500 {
			b.t.Fatalf("%s %s: status %d: %s", method, target, res.StatusCode, raw)
		}
		p := &pageResult{status: res.StatusCode, header: res.Header, body: string(raw), url: target}
		if res.StatusCode < 300 || res.StatusCode >= 400 {
			return p
		}
		loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
		if err != nil {
			b.t.Fatalf("%s %s: bad Location %q", method, target, res.Header.Get("Location"))
		}
		if !strings.HasPrefix(loc.String(), b.n.URL+"/") {
			p.location = loc.String()
			return p
		}
		method, target, form = http.MethodGet, loc.String(), nil
	}
	b.t.Fatalf("%s %s: too many redirects", method, target)
	return nil
}

func (b *browser) get(target string) *pageResult { return b.do(http.MethodGet, target, nil) }

// submit fills the page's form that posts to action and sends it: the
// form's own fields (hidden ones such as the CSRF token) with fill over
// them, as pressing a button does.
func (b *browser) submit(p *pageResult, action string, fill url.Values) *pageResult {
	b.t.Helper()
	fields, ok := formFields(p.body, action)
	if !ok {
		b.t.Fatalf("page %s (status %d) has no form posting to %s:\n%s", p.url, p.status, action, p.body)
	}
	for k, v := range fill {
		fields[k] = v
	}
	return b.do(http.MethodPost, b.n.URL+action, fields)
}

// formFields parses the named inputs of the first form whose action is
// action.
func formFields(page, action string) (url.Values, bool) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return nil, false
	}
	var form *html.Node
	var find func(*html.Node)
	find = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" && attr(n, "action") == action {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return nil, false
	}
	vals := url.Values{}
	var collect func(*html.Node)
	collect = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" && attr(n, "type") != "checkbox" {
			vals.Set(attr(n, "name"), attr(n, "value"))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			collect(c)
		}
	}
	collect(form)
	return vals, true
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// postForm sends a form-encoded request to an OAuth endpoint and decodes
// its JSON answer.
func postForm(t *testing.T, n *testnode.Node, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	res, err := http.PostForm(n.URL+path, form)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("POST %s: status %d, decode: %v", path, res.StatusCode, err)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("POST %s: Cache-Control %q, want no-store", path, res.Header.Get("Cache-Control"))
	}
	return res.StatusCode, m
}

// wantOAuthError fails unless the answer is this status and error code.
func wantOAuthError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["error"] != wantCode {
		t.Fatalf("got %d %v, want %d %s", status, body, wantStatus, wantCode)
	}
}

// registerClient registers a client through dynamic registration.
func registerClient(t *testing.T, n *testnode.Node, meta map[string]any) string {
	t.Helper()
	r := n.Do(t, "POST", "/oauth2/register", "", meta, testnode.NoSpecCheck())
	if r.Status != http.StatusCreated {
		t.Fatalf("register client: %d %s", r.Status, r.Body)
	}
	id, _ := r.JSON(t)["client_id"].(string)
	if id == "" {
		t.Fatalf("register client: no client_id in %s", r.Body)
	}
	return id
}

// webClient registers the usual test client, allowed every grant.
func webClient(t *testing.T, n *testnode.Node) string {
	t.Helper()
	return registerClient(t, n, map[string]any{
		"client_name":                "Test App",
		"client_uri":                 appURI,
		"redirect_uris":              []string{appURI + "cb"},
		"grant_types":                []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
		"application_type":           "web",
	})
}

// pkce returns a random code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL is an authorization request of the test client.
func authorizeURL(n *testnode.Node, clientID, challenge, device string, extra url.Values) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {appURI + "cb"},
		"scope":                 {"urn:matrix:client:api:* urn:matrix:client:device:" + device},
		"state":                 {"state-123"},
		"nonce":                 {"nonce-456"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		q[k] = v
	}
	return n.URL + "/oauth2/authorize?" + q.Encode()
}

// callback parses the redirect to the client's redirect URI.
func callback(t *testing.T, p *pageResult) url.Values {
	t.Helper()
	if !strings.HasPrefix(p.location, appURI+"cb") {
		t.Fatalf("ended on %s (status %d, location %q), not the redirect URI:\n%s", p.url, p.status, p.location, p.body)
	}
	u, err := url.Parse(p.location)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// login signs the browser in on the login page p.
func (b *browser) login(p *pageResult, user, password string) *pageResult {
	b.t.Helper()
	return b.submit(p, "/oauth2/login", url.Values{"username": {user}, "password": {password}})
}

// authorize runs the authorization code flow in the browser up to the
// redirect back to the client, signing in as user, and returns the code.
func (b *browser) authorize(clientID, challenge, device, user string) string {
	b.t.Helper()
	p := b.get(authorizeURL(b.n, clientID, challenge, device, nil))
	if strings.Contains(p.url, "/oauth2/login") {
		p = b.login(p, user, testnode.Password)
	}
	p = b.submit(p, "/oauth2/consent", url.Values{"decision": {"allow"}})
	q := callback(b.t, p)
	if q.Get("state") != "state-123" || q.Get("code") == "" {
		b.t.Fatalf("callback %v: want the state and a code", q)
	}
	return q.Get("code")
}

// exchange redeems a code at the token endpoint.
func exchange(t *testing.T, n *testnode.Node, clientID, code, verifier string) (int, map[string]any) {
	t.Helper()
	return postForm(t, n, "/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appURI + "cb"},
		"client_id": {clientID}, "code_verifier": {verifier},
	})
}

// whoami answers the access token's user and device, or its status.
func whoami(t *testing.T, n *testnode.Node, token string) (int, map[string]any) {
	t.Helper()
	r := n.Do(t, "GET", "/_matrix/client/v3/account/whoami", token, nil)
	if r.Status != http.StatusOK {
		return r.Status, nil
	}
	return r.Status, r.JSON(t)
}
