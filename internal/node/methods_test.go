package node_test

import (
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestWrongMethodAllow mirrors Complement's TestUnknownEndpoints: a known
// endpoint called with another method is 405 M_UNRECOGNIZED and, as RFC
// 9110 requires of a 405, names the methods it takes in Allow.
func TestWrongMethodAllow(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	res := n.Do(t, "PUT", testnode.V3+"/login", "", map[string]any{})
	if res.Status != 405 || res.ErrCode() != "M_UNRECOGNIZED" {
		t.Fatalf("PUT /login: %d %s, want 405 M_UNRECOGNIZED", res.Status, res.Body)
	}
	if allow := res.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("PUT /login: Allow %q, want GET and POST", allow)
	}
	if res := n.Do(t, "GET", "/_matrix/client/v3/nowhere", "", nil); res.Status != 404 || res.ErrCode() != "M_UNRECOGNIZED" {
		t.Errorf("unknown endpoint: %d %s, want 404 M_UNRECOGNIZED", res.Status, res.Body)
	}
}

// TestServerServerPathsOnClientListener mirrors Complement's
// TestUnknownEndpoints, which asks Server-Server paths on the client
// listener: a path the federation listener serves, asked with a method it
// does not take, is 405 M_UNRECOGNIZED with its Allow; an unknown path,
// or one asked with the method the federation listener takes (it is
// served there, not here), is 404 M_UNRECOGNIZED.
func TestServerServerPathsOnClientListener(t *testing.T) {
	n := testnode.StartFederating(t, testnode.SQLite, testnode.NewCA(t))
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"PUT", "/_matrix/federation/v1/version", 405, "GET"},
		{"PUT", "/_matrix/key/v2/query", 405, "POST"},
		{"GET", "/_matrix/federation/v1/unknown", 404, ""},
		{"GET", "/_matrix/key/v2/unknown", 404, ""},
		{"GET", "/_matrix/federation/v1/version", 404, ""},
	} {
		res := n.Do(t, tc.method, tc.path, "", nil, testnode.NoSpecCheck())
		if res.Status != tc.status || res.ErrCode() != "M_UNRECOGNIZED" {
			t.Errorf("%s %s: %d %s, want %d M_UNRECOGNIZED", tc.method, tc.path, res.Status, res.Body, tc.status)
		}
		if allow := res.Header.Get("Allow"); !strings.Contains(allow, tc.allow) || (tc.allow == "") != (allow == "") {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, allow, tc.allow)
		}
	}
}
