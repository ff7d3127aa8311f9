package testnode

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/spectest"
)

// Each runs f as a subtest against a fresh node on each engine, started
// with opts.
func Each(t *testing.T, f func(t *testing.T, n *Node), opts ...Option) {
	t.Helper()
	for _, e := range Engines {
		t.Run(string(e), func(t *testing.T) { f(t, Start(t, e, opts...)) })
	}
}

// RegisterAdmin registers a user (as Register does) and makes it a server
// admin.
func (n *Node) RegisterAdmin(prefix string) *mautrix.Client {
	n.t.Helper()
	c := n.Register(prefix)
	if err := n.Accounts.SetAdmin(n.t.Context(), c.UserID, true); err != nil {
		n.t.Fatalf("make %s admin: %v", c.UserID, err)
	}
	return c
}

// Response is an HTTP answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object; the test fails if it is not one.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// ErrCode returns the body's Matrix errcode, or "" if it has none.
func (r *Response) ErrCode() string {
	var e struct {
		ErrCode string `json:"errcode"`
	}
	json.Unmarshal(r.Body, &e)
	return e.ErrCode
}

// Want fails the test unless the answer has the status and the errcode
// (errcode "": none). It returns r.
func (r *Response) Want(t testing.TB, status int, errcode string) *Response {
	t.Helper()
	if got := r.ErrCode(); r.Status != status || got != errcode {
		t.Fatalf("got %d %q, want %d %q: %s", r.Status, got, status, errcode, r.Body)
	}
	return r
}

// OK fails the test unless the answer is a 200 with a JSON object, and
// returns the object.
func (r *Response) OK(t testing.TB) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("got %d, want 200: %s", r.Status, r.Body)
	}
	return r.JSON(t)
}

// Decode unmarshals JSON into a T; the test fails if it does not decode.
func Decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// RequestOption changes a request that Do or Call sends.
type RequestOption func(*requestConfig)

type requestConfig struct {
	header      http.Header
	noSpecCheck bool
}

// Header sets a request header after the defaults, so it can replace the
// Content-Type or the Authorization; an empty value removes the header.
func Header(key, value string) RequestOption {
	return func(c *requestConfig) {
		if value == "" {
			c.header.Del(key)
		} else {
			c.header.Set(key, value)
		}
	}
}

// NoSpecCheck leaves the answer unchecked against the spec, for answers
// that knowingly differ from it.
func NoSpecCheck() RequestOption {
	return func(c *requestConfig) { c.noSpecCheck = true }
}

// Do sends a request for path (with its query) to the node, with the
// access token when it is not empty. body is sent as is when it is a
// string or []byte, and JSON-encoded otherwise; a body comes with
// Content-Type application/json unless an option changes it. A body the
// server cuts short is returned as far as it came.
//
// The answer is checked as CheckSpec does (unless NoSpecCheck is given),
// and a 500 (or another 5xx
// without a Matrix errcode) fails the test.
func (n *Node) Do(t testing.TB, method, path, token string, body any, opts ...RequestOption) *Response {
	t.Helper()
	return send(t, http.DefaultClient, n.URL, method, path, token, body, opts)
}

// Call is Do for the client c: on its homeserver, with its access token.
func Call(t testing.TB, c *mautrix.Client, method, path string, body any, opts ...RequestOption) *Response {
	t.Helper()
	return send(t, http.DefaultClient, c.HomeserverURL.String(), method, path, c.AccessToken, body, opts)
}

func send(t testing.TB, client *http.Client, base, method, path, token string, body any, opts []RequestOption) *Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("%s %s: encode body: %v", method, path, err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	cfg := requestConfig{header: req.Header}
	for _, o := range opts {
		o(&cfg)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		// A server may cut a download short; the test sees what came.
		t.Logf("%s %s: body cut short: %v", method, path, err)
	}
	r := &Response{Status: res.StatusCode, Header: res.Header, Body: b}
	if r.Status == http.StatusInternalServerError || (r.Status > 500 && r.ErrCode() == "") {
		t.Fatalf("%s %s: status %d: %s", method, path, r.Status, b)
	}
	if !cfg.noSpecCheck {
		CheckSpec(t, method, path, r)
	}
	return r
}

// CheckSpec validates a JSON answer to method and path (a query is
// ignored) against the spec's schema for the operation, when the spec has
// the operation. A 401 token error (M_MISSING_TOKEN, M_UNKNOWN_TOKEN) is
// not checked: the spec describes those for every endpoint at once, while
// some endpoints' own 401 schema is the UIA one. Answers that say they are
// not JSON (downloads, thumbnails) are not checked either.
func CheckSpec(t testing.TB, method, path string, r *Response) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return
		}
	}
	if r.Status == http.StatusUnauthorized {
		if code := r.ErrCode(); code == "M_MISSING_TOKEN" || code == "M_UNKNOWN_TOKEN" {
			return
		}
	}
	p, _, _ := strings.Cut(path, "?")
	if err := spectest.LoadDefault(t).ValidateResponse(method, p, r.Status, r.Body); err != nil && !errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: response not per spec: %v\nbody: %s", method, path, err, r.Body)
	}
}

// ErrCode returns the Matrix errcode and HTTP status of an error from a
// mautrix client, or "" and 0 if it is not a Matrix error.
func ErrCode(err error) (errcode string, status int) {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil {
		if he.Response != nil {
			status = he.Response.StatusCode
		}
		return he.RespError.ErrCode, status
	}
	return "", 0
}

// WantErr fails the test unless err, from a mautrix client, is a Matrix
// error with the errcode and, when status is not 0, the HTTP status.
func WantErr(t testing.TB, err error, errcode string, status int) {
	t.Helper()
	got, st := ErrCode(err)
	if got != errcode || (status != 0 && st != status) {
		t.Fatalf("got %s (HTTP %d, %v), want %s (HTTP %d)", got, st, err, errcode, status)
	}
}

// V3 is the path prefix of the client-server API's v3 endpoints.
const V3 = "/_matrix/client/v3"
