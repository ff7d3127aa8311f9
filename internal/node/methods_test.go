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
