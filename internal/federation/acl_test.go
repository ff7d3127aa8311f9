package federation

import (
	"encoding/json"
	"testing"
)

// TestServerACLAllows: the spec's rules for m.room.server_acl: ports are
// ignored, deny wins over allow, no allow match denies, globs match * and
// ?, IP literals are denied when allow_ip_literals is false, entries that
// are not strings are ignored, and names compare case-insensitively.
func TestServerACLAllows(t *testing.T) {
	for _, tc := range []struct {
		acl    string
		server string
		want   bool
	}{
		{`{"allow": ["*"]}`, "example.org", true},
		{`{"allow": ["*"]}`, "example.org:8448", true},
		{`{}`, "example.org", false},
		{`{"allow": ["*"], "deny": ["evil.example"]}`, "evil.example:1234", false},
		{`{"allow": ["*"], "deny": ["*.evil.example"]}`, "a.evil.example", false},
		{`{"allow": ["*"], "deny": ["*.evil.example"]}`, "evil.example", true},
		{`{"allow": ["good?.example"]}`, "good1.example", true},
		{`{"allow": ["good?.example"]}`, "good12.example", false},
		{`{"allow": ["*.EXAMPLE"]}`, "Sub.example", true},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "127.0.0.1:8448", false},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "[::1]:8448", false},
		{`{"allow": ["*"]}`, "127.0.0.1:8448", true},
		{`{"allow": [5, "ok.example"], "deny": [null]}`, "ok.example", true},
		{`{"allow": ["a.b"]}`, "aXb", false},
	} {
		if got := compileACL(json.RawMessage(tc.acl)).allows(tc.server); got != tc.want {
			t.Errorf("%s allows %s: %v, want %v", tc.acl, tc.server, got, tc.want)
		}
	}
}
