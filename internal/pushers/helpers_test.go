package pushers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

// eachEngine runs f against a fresh node on each database engine.
func eachEngine(t *testing.T, f func(t *testing.T, n *testnode.Node), opts ...testnode.Option) {
	t.Helper()
	for _, e := range testnode.Engines {
		t.Run(string(e), func(t *testing.T) { f(t, testnode.Start(t, e, opts...)) })
	}
}

// call sends a request with a token and JSON body, checks the answer
// against the spec and returns status and raw body.
func call(t *testing.T, n *testnode.Node, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, raw)
	}
	p, _, _ := strings.Cut(path, "?")
	if err := spectest.LoadDefault(t).ValidateResponse(method, p, res.StatusCode, raw); err != nil && !errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: %v\nbody: %s", method, path, err, raw)
	}
	return res.StatusCode, raw
}

// wantErr fails unless the answer is status with errcode.
func wantErr(t *testing.T, status int, body []byte, wantStatus int, errcode string) {
	t.Helper()
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(body, &e)
	if status != wantStatus || e.Errcode != errcode {
		t.Fatalf("got %d %s, want %d %s", status, body, wantStatus, errcode)
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
