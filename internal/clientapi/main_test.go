package clientapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// eachEngine runs f against a node on SQLite and one on PostgreSQL.
func eachEngine(t *testing.T, f func(t *testing.T, n *testnode.Node)) {
	t.Helper()
	for _, e := range testnode.Engines {
		t.Run(string(e), func(t *testing.T) {
			f(t, testnode.Start(t, e))
		})
	}
}

// call sends a raw request as c (unauthenticated when c has no token) and
// returns the status and body. When check is set, the body is validated
// against the spec.
func call(t *testing.T, c *mautrix.Client, method, path string, query url.Values, body any, check bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.HomeserverURL.String() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if check {
		if err := spectest.LoadDefault(t).ValidateResponse(method, path, resp.StatusCode, b); err != nil {
			t.Errorf("%s %s: %v\n%s", method, path, err, b)
		}
	}
	return resp.StatusCode, b
}

// wantCode fails unless err is a Matrix error with the errcode.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != code {
		t.Fatalf("want %s, got %v", code, err)
	}
}

// wantStatus fails unless a raw call answered status with errcode code.
func wantStatus(t *testing.T, status int, body []byte, wantStatus int, code string) {
	t.Helper()
	var e struct {
		ErrCode string `json:"errcode"`
	}
	json.Unmarshal(body, &e)
	if status != wantStatus || e.ErrCode != code {
		t.Fatalf("want %d %s, got %d %s", wantStatus, code, status, body)
	}
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}
