package discordfake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// rateLimits are per-route buckets (route template plus its major
// parameter), each allowing limit requests per window.
type rateLimits struct {
	limit   int
	window  time.Duration
	buckets map[string]*bucket
}

type bucket struct {
	remaining int
	resetAt   time.Time
}

// forcedRetryAfter is the retry_after of a 429 forced by ForceRateLimit.
const forcedRetryAfter = 100 * time.Millisecond

// admit takes one request from the bucket of key, writing the X-RateLimit-*
// headers discordgo reads; when the bucket is used up (or a 429 was forced)
// it answers 429 with retry_after and reports false.
func (s *Server) admit(w http.ResponseWriter, key string) bool {
	s.mu.Lock()
	now := time.Now()
	b := s.limits.buckets[key]
	if b == nil || !now.Before(b.resetAt) {
		b = &bucket{remaining: s.limits.limit, resetAt: now.Add(s.limits.window)}
		s.limits.buckets[key] = b
	}
	forced := s.forced429 > 0
	if forced {
		s.forced429--
	}
	allowed := !forced && b.remaining > 0
	if allowed {
		b.remaining--
	} else {
		s.served429++
	}
	limit, remaining, resetAt := s.limits.limit, b.remaining, b.resetAt
	s.mu.Unlock()

	resetAfter := resetAt.Sub(now)
	h := w.Header()
	sum := sha256.Sum256([]byte(key))
	h.Set("X-RateLimit-Bucket", hex.EncodeToString(sum[:8]))
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", fmt.Sprintf("%.3f", float64(resetAt.UnixMilli())/1000))
	h.Set("X-RateLimit-Reset-After", fmt.Sprintf("%.3f", resetAfter.Seconds()))
	if allowed {
		return true
	}
	retryAfter := resetAfter
	if forced {
		retryAfter = forcedRetryAfter
		h.Set("X-RateLimit-Reset-After", fmt.Sprintf("%.3f", retryAfter.Seconds()))
	}
	h.Set("X-RateLimit-Scope", "user")
	h.Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds()+0.999)))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"message":     "You are being rate limited.",
		"retry_after": retryAfter.Seconds(),
		"global":      false,
	})
	return false
}
