package accounts

import (
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/ratelimit"
)

// Limiter is the part of a rate limiter the service uses to bound
// credential guesses (ratelimit.Limiter has it).
type Limiter interface {
	// Allow takes a token from the bucket of (kind, key), or reports how
	// long until there is one.
	Allow(kind, key string) (bool, time.Duration)
}

// allowGuess counts one credential check (a password, a login token, a
// registration token) against the login limit of the client's IP and,
// when the check is about a known account, of that account. Every path
// that checks a credential calls it before checking, so a guess costs the
// same wherever it is made, whether or not it turns out right; it answers
// 429 M_LIMIT_EXCEEDED once either bucket is empty.
func (s *Service) allowGuess(r *http.Request, user id.UserID) error {
	if s.Limiter == nil {
		return nil
	}
	keys := []string{ratelimit.IPKey(r)}
	if user != "" {
		keys = append(keys, "u:"+string(user))
	}
	for _, key := range keys {
		if ok, wait := s.Limiter.Allow(ratelimit.Login, key); !ok {
			ms := max(wait.Milliseconds(), 1)
			return mxhttp.LimitExceeded("too many attempts, retry in %d ms", ms).With("retry_after_ms", ms)
		}
	}
	return nil
}
