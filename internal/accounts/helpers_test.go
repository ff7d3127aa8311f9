package accounts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// eachEngine runs f against a fresh node on each database engine.
func eachEngine(t *testing.T, f func(t *testing.T, n *testnode.Node), opts ...testnode.Option) {
	t.Helper()
	for _, e := range testnode.Engines {
		t.Run(string(e), func(t *testing.T) {
			f(t, testnode.Start(t, e, opts...))
		})
	}
}

// response is a raw HTTP answer.
type response struct {
	Status int
	Body   []byte
}

// JSON decodes the body as an object.
func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// call sends a request to the node with an optional access token. body is
// sent as is when it is a string or []byte, and JSON-encoded otherwise.
// Every response is checked against the spec when the endpoint is in it,
// and must never be a 500.
func call(t *testing.T, n *testnode.Node, method, path, token string, body any) response {
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
			t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode >= 500 {
		t.Fatalf("%s %s: status %d: %s", method, path, res.StatusCode, b)
	}
	p, _, _ := strings.Cut(path, "?")
	if err := spectest.LoadDefault(t).ValidateResponse(method, p, res.StatusCode, b); err != nil && !errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: %v\nbody: %s", method, path, err, b)
	}
	return response{Status: res.StatusCode, Body: b}
}

// wantErr fails unless r is an error with this status and errcode.
func wantErr(t *testing.T, r response, status int, errcode string) map[string]any {
	t.Helper()
	m := r.JSON(t)
	if r.Status != status || m["errcode"] != errcode {
		t.Fatalf("got %d %v, want %d %s: %s", r.Status, m["errcode"], status, errcode, r.Body)
	}
	return m
}

// wantOK fails unless r is a 200 and returns its body.
func wantOK(t *testing.T, r response) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("got %d, want 200: %s", r.Status, r.Body)
	}
	return r.JSON(t)
}

// mxErr fails unless err is a Matrix error with this errcode.
func mxErr(t *testing.T, err error, errcode string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != errcode {
		t.Fatalf("got error %v, want %s", err, errcode)
	}
}

// passwordAuth is a UIA m.login.password auth dict.
func passwordAuth(user, password, session string) map[string]any {
	a := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user},
		"password":   password,
	}
	if session != "" {
		a["session"] = session
	}
	return a
}
