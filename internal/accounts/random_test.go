package accounts_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/accounts"
)

func TestRandomToken(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		n      int
	}{{"", 16}, {"syd_", 18}, {"mos_", 32}} {
		a, b := accounts.RandomToken(tc.prefix, tc.n), accounts.RandomToken(tc.prefix, tc.n)
		if a == b {
			t.Fatalf("two tokens alike: %q", a)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(a, tc.prefix))
		if !strings.HasPrefix(a, tc.prefix) || err != nil || len(raw) != tc.n {
			t.Fatalf("RandomToken(%q, %d) = %q: %d bytes, %v", tc.prefix, tc.n, a, len(raw), err)
		}
	}
}

func TestRandomString(t *testing.T) {
	for _, alphabet := range []string{"AB", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"} {
		seen := map[rune]int{}
		s := accounts.RandomString(alphabet, 4000)
		if len(s) != 4000 {
			t.Fatalf("%d characters, want 4000", len(s))
		}
		for _, c := range s {
			if !strings.ContainsRune(alphabet, c) {
				t.Fatalf("%q is not in %q", c, alphabet)
			}
			seen[c]++
		}
		// Every character turns up, none more than about twice as often
		// as it should (4000/len draws each on average).
		want := 4000 / len(alphabet)
		for _, c := range alphabet {
			if seen[c] == 0 || seen[c] > 2*want+20 {
				t.Fatalf("alphabet %q: %q drawn %d times of 4000", alphabet, c, seen[c])
			}
		}
	}
}
