package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// rawResponse is an HTTP answer as bytes.
type rawResponse struct {
	Status int
	Body   []byte
}

// rawCall sends a request to the node and returns the answer unparsed.
// body is sent as is when it is a string or []byte, JSON-encoded otherwise.
// A 5xx answer fails the test.
func rawCall(t *testing.T, n *testnode.Node, method, path, token string, body any) rawResponse {
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
	return rawResponse{Status: res.StatusCode, Body: b}
}

// checkSpec validates a response against the spec's operation for the
// request, when the spec has one. A 401 token error is checked for the
// common error shape only: the spec describes those for every endpoint
// at once, while some endpoints' own 401 schema is the UIA one.
func checkSpec(t *testing.T, method, path string, r rawResponse) {
	t.Helper()
	p, _, _ := strings.Cut(path, "?")
	var e struct {
		ErrCode *string `json:"errcode"`
		Error   *string `json:"error"`
	}
	if r.Status >= 400 && !(r.Status == http.StatusUnauthorized && bytes.Contains(r.Body, []byte(`"flows"`))) {
		if err := json.Unmarshal(r.Body, &e); err != nil || e.ErrCode == nil || !strings.HasPrefix(*e.ErrCode, "M_") {
			t.Errorf("%s %s: error %d without a Matrix error body: %s", method, path, r.Status, r.Body)
			return
		}
	}
	if r.Status == http.StatusUnauthorized && e.ErrCode != nil && (*e.ErrCode == "M_MISSING_TOKEN" || *e.ErrCode == "M_UNKNOWN_TOKEN") {
		return
	}
	if err := spectest.LoadDefault(t).ValidateResponse(method, p, r.Status, r.Body); err != nil && !errors.Is(err, spectest.ErrUnknownOperation) {
		t.Errorf("%s %s: %v\nbody: %s", method, path, err, r.Body)
	}
}

// rawJSON decodes a response body as a JSON object.
func rawJSON(t *testing.T, r rawResponse) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}
