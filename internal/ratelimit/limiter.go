package ratelimit

import (
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// The request kinds the node limits.
const (
	Login    = "login"
	Register = "register"
	Send     = "send"
	Upload   = "upload"
)

// Rule is one kind's rate: PerMinute tokens a minute, at most Burst at
// once. A zero PerMinute means unlimited.
type Rule struct {
	PerMinute int64
	Burst     int64
}

// Identity is who a request comes from, as far as limiting goes.
type Identity struct {
	// User is the authenticated user ("" for anonymous requests, which
	// are limited per client IP).
	User string
	// Exempt requests (server admins, appservices) are never limited.
	Exempt bool
}

// Options configure a Limiter.
type Options struct {
	// Rules maps each kind to its rate; kinds without a rule are unlimited.
	Rules map[string]Rule
	// Identify resolves the request's sender; nil treats every request as
	// anonymous.
	Identify func(r *http.Request) Identity
	// MaxKeys bounds the number of buckets kept (default 100000).
	MaxKeys int
}

// Limiter holds the buckets.
type Limiter struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns a limiter.
func New(opts Options) *Limiter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 100000
	}
	return &Limiter{opts: opts, now: time.Now, buckets: map[string]*bucket{}}
}

// SetClock replaces the limiter's clock (for tests).
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// Allow takes a token from the bucket of (kind, key). When the bucket is
// empty it reports how long until the next token.
func (l *Limiter) Allow(kind, key string) (bool, time.Duration) {
	rule, ok := l.opts.Rules[kind]
	if !ok || rule.PerMinute <= 0 {
		return true, 0
	}
	burst := float64(max(rule.Burst, 1))
	rate := float64(rule.PerMinute) / 60 // tokens per second
	now := l.now()
	k := kind + "\x00" + key
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.opts.MaxKeys {
			l.evictLocked(now)
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[k] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(burst, b.tokens+elapsed*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// refund gives back a token taken by Allow, for requests that turn out
// not to count.
func (l *Limiter) refund(kind, key string) {
	rule, ok := l.opts.Rules[kind]
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[kind+"\x00"+key]; b != nil {
		b.tokens = math.Min(float64(max(rule.Burst, 1)), b.tokens+1)
	}
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// evictLocked drops buckets that have refilled completely; if that frees
// too little, it drops an arbitrary half of the rest.
func (l *Limiter) evictLocked(now time.Time) {
	for k, b := range l.buckets {
		kind, _, _ := strings.Cut(k, "\x00")
		rule := l.opts.Rules[kind]
		full := float64(max(rule.Burst, 1))
		if rule.PerMinute <= 0 || b.tokens+now.Sub(b.last).Seconds()*float64(rule.PerMinute)/60 >= full {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.opts.MaxKeys*9/10 {
		return
	}
	n := 0
	for k := range l.buckets {
		delete(l.buckets, k)
		if n++; n >= len(l.buckets) {
			break
		}
	}
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// Wrap limits h as the given kind: per user for authenticated requests,
// per client IP otherwise.
func (l *Limiter) Wrap(kind string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rule, ok := l.opts.Rules[kind]; !ok || rule.PerMinute <= 0 {
			h.ServeHTTP(w, r)
			return
		}
		var who Identity
		if l.opts.Identify != nil {
			who = l.opts.Identify(r)
		}
		if who.Exempt {
			h.ServeHTTP(w, r)
			return
		}
		key := "u:" + who.User
		if who.User == "" {
			key = "ip:" + ClientIP(r)
		}
		if ok, wait := l.Allow(kind, key); !ok {
			ms := max(wait.Milliseconds(), 1)
			mxhttp.WriteError(w, r, mxhttp.LimitExceeded("too many requests, retry in %d ms", ms).With("retry_after_ms", ms))
			return
		}
		if kind != Register {
			h.ServeHTTP(w, r)
			return
		}
		// A registration takes several round trips of User-Interactive
		// Authentication (and clients poll while a stage is pending):
		// only the requests that do not end in a 401 count.
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusUnauthorized {
			l.refund(kind, key)
		}
	})
}

// Routes maps the route patterns the node limits to their kind.
var Routes = map[string]string{
	"POST /_matrix/client/v3/login":                                         Login,
	"POST /_matrix/client/v3/register":                                      Register,
	"PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}":        Send,
	"PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey...}": Send,
	"PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}":        Send,
	"POST /_matrix/media/v3/upload":                                         Upload,
	"PUT /_matrix/media/v3/upload/{serverName}/{mediaId}":                   Upload,
	"POST /_matrix/media/v1/create":                                         Upload,
}

// Middleware limits the requests whose route is in Routes and passes the
// others straight to next.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	for pattern, kind := range Routes {
		mux.Handle(pattern, l.Wrap(kind, next))
	}
	mux.Handle("/", next)
	return mux
}

// ClientIP returns the request's client address: the peer, or, when the
// peer is a proxy on the loopback interface, the last address it appended
// to X-Forwarded-For.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); net.ParseIP(last) != nil {
				return last
			}
		}
	}
	return host
}
