package oauth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// rendezvousCall sends one request to a rendezvous session (no access
// token: the sessions need none) and returns the status, headers and body.
func rendezvousCall(t *testing.T, method, target, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "text/plain")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

// TestQRLoginThroughRendezvous runs MSC4108's QR code login as the two
// devices would, the secure channel's messages replaced by plain text:
// the new device creates a rendezvous session (its URL is what the QR code
// carries), the existing device reads and answers, a write with a stale
// ETag is refused with M_CONCURRENT_WRITE, the new device starts the OAuth
// device authorization grant and passes the verification URL through the
// session, the existing device's user approves it in the browser, and the
// new device gets its token. /versions advertises the sessions, a browser
// may use them across origins, and the session ends with DELETE.
func TestQRLoginThroughRendezvous(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		versions := n.Do(t, "GET", "/_matrix/client/versions", "", nil).OK(t)
		if f, _ := versions["unstable_features"].(map[string]any); f["org.matrix.msc4108"] != true {
			t.Fatalf("unstable_features: %v", versions["unstable_features"])
		}
		create := n.URL + "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"

		// A browser's preflight for a conditional write is allowed.
		_, pre, _ := rendezvousCall(t, http.MethodOptions, create+"/x", "",
			"Origin", "https://app.example.test", "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "if-match")
		if !strings.Contains(pre.Get("Access-Control-Allow-Headers"), "If-Match") {
			t.Fatalf("preflight allows headers %q", pre.Get("Access-Control-Allow-Headers"))
		}

		// The new device opens the session.
		status, h, body := rendezvousCall(t, http.MethodPost, create, "new device: hello")
		if status != http.StatusCreated || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "ETag") {
			t.Fatalf("create: %d %v %s", status, h, body)
		}
		var created struct{ URL string }
		if err := json.Unmarshal([]byte(body), &created); err != nil || !strings.HasPrefix(created.URL, create+"/") {
			t.Fatalf("create answer %s: %v", body, err)
		}
		session, newDeviceETag := created.URL, h.Get("ETag")

		// The existing device scanned the QR code: it reads and answers.
		status, h, body = rendezvousCall(t, http.MethodGet, session, "")
		if status != http.StatusOK || body != "new device: hello" {
			t.Fatalf("existing device reads: %d %s", status, body)
		}
		status, h, _ = rendezvousCall(t, http.MethodPut, session, "existing device: hello", "If-Match", h.Get("ETag"))
		if status != http.StatusAccepted {
			t.Fatalf("existing device writes: %d", status)
		}
		existingETag := h.Get("ETag")

		// The new device writes without having read that: refused.
		status, _, body = rendezvousCall(t, http.MethodPut, session, "new device: again", "If-Match", newDeviceETag)
		var refusal map[string]any
		if err := json.Unmarshal([]byte(body), &refusal); err != nil || status != http.StatusPreconditionFailed ||
			refusal["errcode"] != "M_UNKNOWN" || refusal["org.matrix.msc4108.errcode"] != "M_CONCURRENT_WRITE" {
			t.Fatalf("stale write: %d %s", status, body)
		}
		// It polls, sees the answer, and starts the device grant.
		status, h, body = rendezvousCall(t, http.MethodGet, session, "", "If-None-Match", newDeviceETag)
		if status != http.StatusOK || body != "existing device: hello" || h.Get("ETag") != existingETag {
			t.Fatalf("new device polls: %d %s", status, body)
		}
		clientID := webClient(t, n)
		status, da := postForm(t, n, "/oauth2/device_authorization", url.Values{
			"client_id": {clientID}, "scope": {"urn:matrix:client:api:* urn:matrix:client:device:QRDEVICE01"},
		})
		if status != http.StatusOK {
			t.Fatalf("device authorization: %d %v", status, da)
		}
		verify, _ := da["verification_uri_complete"].(string)
		status, h, _ = rendezvousCall(t, http.MethodPut, session, verify, "If-Match", existingETag)
		if status != http.StatusAccepted {
			t.Fatalf("new device sends the verification URL: %d", status)
		}
		grantETag := h.Get("ETag")

		// The existing device reads it; its user approves in the browser.
		status, _, body = rendezvousCall(t, http.MethodGet, session, "", "If-None-Match", existingETag)
		if status != http.StatusOK || body != verify {
			t.Fatalf("existing device reads the verification URL: %d %q", status, body)
		}
		if status, _, _ := rendezvousCall(t, http.MethodGet, session, "", "If-None-Match", grantETag); status != http.StatusNotModified {
			t.Fatalf("poll without news: %d", status)
		}
		b := newBrowser(t, n)
		consent := b.login(b.get(body), alice.UserID.Localpart(), testnode.Password)
		if done := b.submit(consent, "/oauth2/device", url.Values{"decision": {"allow"}}); done.status != http.StatusOK {
			t.Fatalf("approve the new device: %d\n%s", done.status, done.body)
		}

		// The new device polls the token endpoint and is signed in.
		status, tok := postForm(t, n, "/oauth2/token", url.Values{
			"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da["device_code"].(string)}, "client_id": {clientID},
		})
		if status != http.StatusOK {
			t.Fatalf("device token: %d %v", status, tok)
		}
		if _, who := whoami(t, n, tok["access_token"].(string)); who["user_id"] != string(alice.UserID) || who["device_id"] != "QRDEVICE01" {
			t.Fatalf("whoami with the new device's token: %v", who)
		}

		// Done: the session is closed and gone.
		if status, _, _ := rendezvousCall(t, http.MethodDelete, session, ""); status != http.StatusNoContent {
			t.Fatalf("delete: %d", status)
		}
		if status, _, _ := rendezvousCall(t, http.MethodGet, session, ""); status != http.StatusNotFound {
			t.Fatalf("get after delete: %d", status)
		}
	})
}

// TestRendezvousRateLimited: creating rendezvous sessions counts against
// a client IP's registration rate, as starting a sign-in does.
func TestRendezvousRateLimited(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) {
		c.RateLimit, c.RateLimitRegPerMin, c.RateLimitRegBurst = true, 1, 1
	})
	create := n.URL + "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
	if status, _, body := rendezvousCall(t, http.MethodPost, create, "one"); status != http.StatusCreated {
		t.Fatalf("first session: %d %s", status, body)
	}
	status, _, body := rendezvousCall(t, http.MethodPost, create, "two")
	if status != http.StatusTooManyRequests || !strings.Contains(body, "M_LIMIT_EXCEEDED") {
		t.Fatalf("second session at once: %d %s", status, body)
	}
}
