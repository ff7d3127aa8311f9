package rendezvous

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// answer is one response, its body read.
type answer struct {
	status int
	header http.Header
	body   string
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(a.body), &m); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	return m
}

// wantErr checks a Matrix error answer; code may be the MSC's unstable
// errcode field.
func (a answer) wantErr(t *testing.T, status int, errcode string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d (%s), want %d", a.status, a.body, status)
	}
	m := a.json(t)
	if m["errcode"] != errcode && m["org.matrix.msc4108.errcode"] != errcode {
		t.Fatalf("error %v, want %s", m, errcode)
	}
}

func call(t *testing.T, method, url, body string, headers ...string) answer {
	t.Helper()
	var r io.Reader
	if body != "" || method == http.MethodPost || method == http.MethodPut {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func start(t *testing.T, opts Options) (*Service, string, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	opts.BaseURL, opts.Now = func() string { return srv.URL + "/" }, c.now
	s := New(opts)
	s.Routes(mux)
	return s, srv.URL + Path, c
}

const textPlain = "text/plain"

// TestSessionExchange: a session is created with a payload and read back;
// a write must name the current ETag in If-Match (a stale one is 412 with
// M_CONCURRENT_WRITE and the current headers), If-None-Match answers 304
// while nothing changed, and every answer carries the MSC's headers.
func TestSessionExchange(t *testing.T) {
	_, create, c := start(t, Options{})
	a := call(t, "POST", create, "hello from the new device", "Content-Type", "text/plain; charset=utf-8")
	if a.status != http.StatusCreated {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	url, _ := a.json(t)["url"].(string)
	if !strings.HasPrefix(url, create+"/") || len(url) < len(create)+20 {
		t.Fatalf("session url %q", url)
	}
	etag1 := a.header.Get("ETag")
	expires := c.t.Add(DefaultTTL).Format(http.TimeFormat)
	wantHeaders := func(a answer) {
		t.Helper()
		h := a.header
		if !strings.HasPrefix(h.Get("ETag"), `"`) || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" ||
			h.Get("Expires") != expires || h.Get("Last-Modified") == "" {
			t.Fatalf("headers %v", h)
		}
	}
	wantHeaders(a)

	got := call(t, "GET", url, "")
	if got.status != http.StatusOK || got.body != "hello from the new device" || got.header.Get("Content-Type") != textPlain ||
		got.header.Get("ETag") != etag1 {
		t.Fatalf("get: %d %q %v", got.status, got.body, got.header)
	}
	wantHeaders(got)
	if nm := call(t, "GET", url, "", "If-None-Match", etag1); nm.status != http.StatusNotModified || nm.body != "" {
		t.Fatalf("If-None-Match current: %d %q", nm.status, nm.body)
	}

	c.t = c.t.Add(time.Second)
	put := call(t, "PUT", url, "hello from the existing device", "Content-Type", textPlain, "If-Match", etag1)
	if put.status != http.StatusAccepted {
		t.Fatalf("put: %d %s", put.status, put.body)
	}
	wantHeaders(put)
	etag2 := put.header.Get("ETag")
	if etag2 == etag1 || put.header.Get("Last-Modified") != c.t.Format(http.TimeFormat) {
		t.Fatalf("put headers: %v", put.header)
	}

	stale := call(t, "PUT", url, "overwrite", "Content-Type", textPlain, "If-Match", etag1)
	stale.wantErr(t, http.StatusPreconditionFailed, "M_CONCURRENT_WRITE")
	if stale.header.Get("ETag") != etag2 {
		t.Fatalf("412 ETag %q, want the current %q", stale.header.Get("ETag"), etag2)
	}
	got = call(t, "GET", url, "", "If-None-Match", etag1)
	if got.status != http.StatusOK || got.body != "hello from the existing device" || got.header.Get("ETag") != etag2 {
		t.Fatalf("get after put: %d %q", got.status, got.body)
	}
	// An unquoted ETag, as some clients echo it, names the same payload.
	if a := call(t, "PUT", url, "third", "Content-Type", textPlain, "If-Match", strings.Trim(etag2, `"`)); a.status != http.StatusAccepted {
		t.Fatalf("unquoted If-Match: %d %s", a.status, a.body)
	}

	if d := call(t, "DELETE", url, ""); d.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", d.status, d.body)
	}
	call(t, "GET", url, "").wantErr(t, http.StatusNotFound, "M_NOT_FOUND")
	call(t, "DELETE", url, "").wantErr(t, http.StatusNotFound, "M_NOT_FOUND")
}

// TestBadRequests: the MSC's error for each malformed request.
func TestBadRequests(t *testing.T) {
	_, create, _ := start(t, Options{})
	a := call(t, "POST", create, "x", "Content-Type", textPlain)
	url, etag := a.json(t)["url"].(string), a.header.Get("ETag")
	big := strings.Repeat("x", MaxPayload+1)
	tests := []struct {
		name    string
		method  string
		url     string
		body    string
		headers []string
		status  int
		errcode string
	}{
		{"create without Content-Type", "POST", create, "x", nil, 400, "M_MISSING_PARAM"},
		{"create as JSON", "POST", create, "{}", []string{"Content-Type", "application/json"}, 400, "M_INVALID_PARAM"},
		{"create too large", "POST", create, big, []string{"Content-Type", textPlain}, 413, "M_TOO_LARGE"},
		{"put without If-Match", "PUT", url, "y", []string{"Content-Type", textPlain}, 400, "M_MISSING_PARAM"},
		{"put with a weak ETag", "PUT", url, "y", []string{"Content-Type", textPlain, "If-Match", "W/" + etag}, 400, "M_INVALID_PARAM"},
		{"put with a list", "PUT", url, "y", []string{"Content-Type", textPlain, "If-Match", etag + ", " + etag}, 400, "M_INVALID_PARAM"},
		{"put with a wildcard", "PUT", url, "y", []string{"Content-Type", textPlain, "If-Match", "*"}, 400, "M_INVALID_PARAM"},
		{"put without Content-Type", "PUT", url, "y", []string{"If-Match", etag}, 400, "M_MISSING_PARAM"},
		{"put too large", "PUT", url, big, []string{"Content-Type", textPlain, "If-Match", etag}, 413, "M_TOO_LARGE"},
		{"put to an unknown session", "PUT", create + "/nope", "y", []string{"Content-Type", textPlain, "If-Match", etag}, 404, "M_NOT_FOUND"},
		{"get an unknown session", "GET", create + "/nope", "", nil, 404, "M_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call(t, tt.method, tt.url, tt.body, tt.headers...).wantErr(t, tt.status, tt.errcode)
		})
	}
	// None of them changed the payload.
	if got := call(t, "GET", url, ""); got.body != "x" || got.header.Get("ETag") != etag {
		t.Fatalf("payload after bad requests: %q %v", got.body, got.header)
	}
}

// TestExpiryAndLimit: a session ends its TTL after creation, whatever was
// written since, and no more than MaxSessions live at once (expired ones
// make room).
func TestExpiryAndLimit(t *testing.T) {
	s, create, c := start(t, Options{TTL: time.Minute, MaxSessions: 2})
	a := call(t, "POST", create, "one", "Content-Type", textPlain)
	url, etag := a.json(t)["url"].(string), a.header.Get("ETag")
	c.t = c.t.Add(59 * time.Second)
	if a := call(t, "PUT", url, "still here", "Content-Type", textPlain, "If-Match", etag); a.status != http.StatusAccepted {
		t.Fatalf("put before expiry: %d %s", a.status, a.body)
	}
	if a := call(t, "POST", create, "two", "Content-Type", textPlain); a.status != http.StatusCreated {
		t.Fatalf("second session: %d", a.status)
	}
	call(t, "POST", create, "three", "Content-Type", textPlain).wantErr(t, http.StatusForbidden, "M_FORBIDDEN")

	c.t = c.t.Add(time.Second)
	call(t, "GET", url, "").wantErr(t, http.StatusNotFound, "M_NOT_FOUND")
	if a := call(t, "POST", create, "three", "Content-Type", textPlain); a.status != http.StatusCreated {
		t.Fatalf("session after one expired: %d %s", a.status, a.body)
	}
	if n := s.Len(); n != 2 {
		t.Fatalf("%d sessions held, want 2", n)
	}
}
