package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
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

// admin registers a user and makes it a server admin.
func admin(t *testing.T, n *testnode.Node) *mautrix.Client {
	t.Helper()
	c := n.Register("admin")
	if err := n.Accounts.SetAdmin(context.Background(), c.UserID, true); err != nil {
		t.Fatal(err)
	}
	return c
}

// response is a raw call's answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// obj decodes the body as a JSON object.
func (r response) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// call sends a raw request as c (unauthenticated without a token). With
// spec set, the answer is validated against the spec.
func call(t *testing.T, c *mautrix.Client, method, path string, body any, spec bool) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.HomeserverURL.String()+path, rd)
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
	if spec {
		if err := spectest.LoadDefault(t).ValidateResponse(method, req.URL.EscapedPath(), resp.StatusCode, b); err != nil {
			t.Errorf("%s %s: %v\n%s", method, path, err, b)
		}
	}
	return response{resp.StatusCode, resp.Header, b}
}

// want fails unless the answer has the status (and errcode, if given).
func want(t *testing.T, r response, status int, code string) {
	t.Helper()
	var e struct {
		ErrCode string `json:"errcode"`
	}
	json.Unmarshal(r.body, &e)
	if r.status != status || e.ErrCode != code {
		t.Fatalf("want %d %q, got %d %s", status, code, r.status, r.body)
	}
}

// wantErr fails unless err is a Matrix error with the errcode.
func wantErr(t *testing.T, err error, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != code {
		t.Fatalf("want %s, got %v", code, err)
	}
}
