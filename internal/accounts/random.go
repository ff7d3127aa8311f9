package accounts

import (
	"crypto/rand"
	"encoding/base64"
)

// RandomToken returns prefix followed by n random bytes, base64url-encoded
// without padding: the form of the server's secrets (access and refresh
// tokens, OAuth codes and sessions, delay IDs, OpenID tokens).
func RandomToken(prefix string, n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand crashes the program instead
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// RandomString returns n characters drawn evenly from alphabet, which has
// at most 256 characters: device IDs, user codes, registration tokens,
// media IDs.
func RandomString(alphabet string, n int) string {
	out := make([]byte, 0, n)
	b := make([]byte, 1)
	for len(out) < n {
		rand.Read(b)
		// Values past the largest multiple of the alphabet's length
		// would favour its first characters: they are drawn again.
		if int(b[0]) < 256-256%len(alphabet) {
			out = append(out, alphabet[int(b[0])%len(alphabet)])
		}
	}
	return string(out)
}
