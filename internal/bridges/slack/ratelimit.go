package slack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	slackapi "github.com/slack-go/slack"
	"golang.org/x/time/rate"
)

// Slack's Web API limits calls per method in tiers (per app and workspace,
// per minute); chat.postMessage is limited to about one message per second
// per channel with short bursts. https://api.slack.com/apis/rate-limits
var methodTiers = map[string]int{
	"apps.connections.open":        1,
	"conversations.list":           2,
	"reactions.remove":             2,
	"auth.test":                    3,
	"conversations.info":           3,
	"conversations.history":        3,
	"chat.update":                  3,
	"chat.delete":                  3,
	"reactions.add":                3,
	"conversations.members":        4,
	"users.info":                   4,
	"files.info":                   4,
	"files.getUploadURLExternal":   4,
	"files.completeUploadExternal": 4,
	"files.download":               4,
}

// perMinute is each tier's allowance.
var perMinute = map[int]int{1: 1, 2: 20, 3: 50, 4: 100}

// maxRateLimitRetries bounds how often one call is retried after
// "ratelimited"; maxRetryAfter caps how long one wait may be.
const (
	maxRateLimitRetries = 5
	maxRetryAfter       = 2 * time.Minute
)

// rateLimiter paces calls to Slack's tiers: one token bucket per method,
// and per channel for chat.postMessage.
type rateLimiter struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{buckets: map[string]*rate.Limiter{}}
}

func (l *rateLimiter) bucket(method, channel string) *rate.Limiter {
	key := method
	if method == "chat.postMessage" {
		key += "/" + channel
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil {
		return b
	}
	var b *rate.Limiter
	if method == "chat.postMessage" {
		b = rate.NewLimiter(rate.Every(time.Second), 3)
	} else {
		tier, ok := methodTiers[method]
		if !ok {
			tier = 3
		}
		n := perMinute[tier]
		b = rate.NewLimiter(rate.Every(time.Minute/time.Duration(n)), max(1, n/10))
	}
	l.buckets[key] = b
	return b
}

// callSlack waits for method's rate limit, calls fn and, when Slack answers
// "ratelimited" (HTTP 429), waits Retry-After and calls again, up to
// maxRateLimitRetries times.
func callSlack[T any](ctx context.Context, limits *rateLimiter, method, channel string, fn func() (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		if err := limits.bucket(method, channel).Wait(ctx); err != nil {
			return zero, fmt.Errorf("%s: waiting for the rate limit: %w", method, err)
		}
		result, err := fn()
		var limited *slackapi.RateLimitedError
		if !errors.As(err, &limited) {
			if err != nil {
				return zero, fmt.Errorf("%s: %w", method, err)
			}
			return result, nil
		}
		if attempt >= maxRateLimitRetries {
			return zero, fmt.Errorf("%s: still rate-limited after %d retries: %w", method, attempt, err)
		}
		wait := min(max(limited.RetryAfter, time.Second), maxRetryAfter)
		zerolog.Ctx(ctx).Warn().Str("method", method).Stringer("retry_after", wait).Msg("Slack rate-limited the call, retrying")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return zero, fmt.Errorf("%s: waiting to retry: %w", method, ctx.Err())
		}
	}
}
