package ratelimit

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// The request kinds the node limits.
const (
	Login    = "login"
	Register = "register"
	Send     = "send"
	Upload   = "upload"
	// AppserviceQuery counts the lookups a request makes an appservice
	// answer (GET /_matrix/app/v1/users/... and /rooms/...): a profile,
	// alias or invite of a user or alias in its namespaces that does not
	// exist yet. Taken with AllowRequester.
	AppserviceQuery = "appservice_query"
	// Report counts users' reports of events, rooms and users (POST
	// .../report), each of which reaches the moderators' room.
	Report = "report"
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

// Limiter holds one token bucket (a rate.Limiter) per (kind, key).
type Limiter struct {
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// New returns a limiter.
func New(opts Options) *Limiter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 100000
	}
	return &Limiter{opts: opts, now: time.Now, buckets: map[string]*rate.Limiter{}}
}

// SetClock replaces the limiter's clock (for tests).
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// Allow takes a token from the bucket of (kind, key). When the bucket is
// empty it reports how long until the next token.
func (l *Limiter) Allow(kind, key string) (bool, time.Duration) {
	_, wait := l.take(kind, key)
	return wait == 0, wait
}

// taken is a token Allow handed out, which refund can give back.
type taken struct {
	res *rate.Reservation
	at  time.Time
}

// take takes a token from the bucket of (kind, key). It returns what
// refund needs to give the token back (nil for unlimited kinds) or, when
// the bucket is empty, how long until the next token.
func (l *Limiter) take(kind, key string) (*taken, time.Duration) {
	now := l.now()
	bucket := l.bucket(kind, key, now)
	if bucket == nil {
		return nil, 0
	}
	res := bucket.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		// A refused request takes nothing: without the cancellation the
		// reservation would stay as a debt that delays the next token.
		res.CancelAt(now)
		return nil, max(wait, time.Millisecond)
	}
	return &taken{res: res, at: now}, 0
}

// refund gives back a token taken by take, for requests that turn out
// not to count.
func (l *Limiter) refund(t *taken) {
	if t == nil {
		return
	}
	// Cancelling as of the moment the token was taken restores it; tokens
	// that other requests took since are accounted for by rate.
	t.res.CancelAt(t.at)
}

// bucket returns the bucket of (kind, key), creating it full when
// missing, or nil when kind is unlimited.
func (l *Limiter) bucket(kind, key string, now time.Time) *rate.Limiter {
	rule, ok := l.opts.Rules[kind]
	if !ok || rule.PerMinute <= 0 {
		return nil
	}
	k := kind + "\x00" + key
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.opts.MaxKeys {
			l.evictLocked(now)
		}
		b = rate.NewLimiter(rate.Limit(float64(rule.PerMinute)/60), int(max(rule.Burst, 1)))
		l.buckets[k] = b
	}
	return b
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

// evictLocked drops buckets that have refilled completely (they behave
// like new ones); if that frees too little, it drops an arbitrary half of
// the rest.
func (l *Limiter) evictLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
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
			key = IPKey(r)
		}
		token, wait := l.take(kind, key)
		if wait > 0 {
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
			l.refund(token)
		}
	})
}

// Routes maps the route patterns the node limits to their kind. Login is
// not a route's kind: the accounts service counts each credential it
// checks, on whichever endpoint, against the client IP and the account.
var Routes = map[string]string{
	"POST /_matrix/client/v3/register":                                      Register,
	"POST /oauth2/signup":                                                   Register,
	"POST /oauth2/register":                                                 Register, // OAuth client registration
	"POST /oauth2/device_authorization":                                     Register,
	"POST /_matrix/client/unstable/org.matrix.msc4108/rendezvous":           Register, // QR login sessions
	"PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}":        Send,
	"PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey...}": Send,
	"PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}":        Send,
	"POST /_matrix/media/v3/upload":                                         Upload,
	"PUT /_matrix/media/v3/upload/{serverName}/{mediaId}":                   Upload,
	"POST /_matrix/media/v1/create":                                         Upload,
	"POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}":               Report,
	"POST /_matrix/client/v3/rooms/{roomId}/report":                         Report,
	"POST /_matrix/client/v3/users/{userId}/report":                         Report,
}

// Middleware limits the requests whose route is in Routes and passes the
// others straight to next. Every request's context carries who sent it,
// for AllowRequester (resolved only when asked).
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	for pattern, kind := range Routes {
		mux.Handle(pattern, l.Wrap(kind, next))
	}
	mux.Handle("/", next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requesterKey{}, r)))
	})
}

// requesterKey is the context key of the request Middleware saw.
type requesterKey struct{}

// AllowRequester takes a token of kind from the bucket of whoever sent the
// request ctx belongs to (its user, or its client IP without an access
// token), as Wrap would. Work that no request of Middleware's started
// (ctx carries none) and exempt senders are not limited. When the bucket
// is empty it reports how long until the next token.
func (l *Limiter) AllowRequester(ctx context.Context, kind string) (bool, time.Duration) {
	r, _ := ctx.Value(requesterKey{}).(*http.Request)
	if r == nil {
		return true, 0
	}
	if rule, ok := l.opts.Rules[kind]; !ok || rule.PerMinute <= 0 {
		return true, 0
	}
	var who Identity
	if l.opts.Identify != nil {
		who = l.opts.Identify(r)
	}
	if who.Exempt {
		return true, 0
	}
	key := "u:" + who.User
	if who.User == "" {
		key = IPKey(r)
	}
	return l.Allow(kind, key)
}

// IPKey is the rate-limit key of the request's client address (see
// ClientIP): the address for IPv4, its /64 network for IPv6, since one
// host usually holds a whole /64 and could otherwise take a fresh bucket
// for every request.
func IPKey(r *http.Request) string {
	ip := ClientIP(r)
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip
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
