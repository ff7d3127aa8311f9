package ratelimit_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/ratelimit"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestAllowRefills(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rules: map[string]ratelimit.Rule{"k": {PerMinute: 60, Burst: 3}}})
	c := &clock{t: time.Unix(1000, 0)}
	l.SetClock(c.now)
	for i := range 3 {
		if ok, _ := l.Allow("k", "a"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	ok, wait := l.Allow("k", "a")
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: ok=%v wait=%v, want refused with wait in (0, 1s]", ok, wait)
	}
	if ok, _ := l.Allow("k", "b"); !ok {
		t.Fatal("another key shares the bucket")
	}
	c.t = c.t.Add(time.Second)
	if ok, _ := l.Allow("k", "a"); !ok {
		t.Fatal("no token after a second at 60/min")
	}
	if ok, _ := l.Allow("unlimited", "a"); !ok {
		t.Fatal("a kind without a rule was limited")
	}
}

func TestBoundedBuckets(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rules: map[string]ratelimit.Rule{"k": {PerMinute: 1, Burst: 2}}, MaxKeys: 100})
	for i := range 1000 {
		l.Allow("k", fmt.Sprint(i))
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("%d buckets kept, want at most 100", n)
	}
}

func TestWrap(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	tests := []struct {
		name   string
		who    ratelimit.Identity
		remote []string
		want   []int
	}{
		{"anonymous per IP", ratelimit.Identity{}, []string{"10.0.0.1:1", "10.0.0.1:2", "10.0.0.2:1"}, []int{200, 429, 200}},
		{"user", ratelimit.Identity{User: "@a:x"}, []string{"10.0.0.1:1", "10.0.0.2:1"}, []int{200, 429}},
		{"exempt", ratelimit.Identity{User: "@admin:x", Exempt: true}, []string{"10.0.0.1:1", "10.0.0.1:1"}, []int{200, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ratelimit.New(ratelimit.Options{
				Rules:    map[string]ratelimit.Rule{ratelimit.Upload: {PerMinute: 1, Burst: 1}},
				Identify: func(*http.Request) ratelimit.Identity { return tt.who },
			})
			h := l.Middleware(ok)
			for i, remote := range tt.remote {
				req := httptest.NewRequest("POST", "/_matrix/media/v3/upload", nil)
				req.RemoteAddr = remote
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tt.want[i] {
					t.Fatalf("request %d: status %d, want %d", i, rec.Code, tt.want[i])
				}
				if rec.Code == 429 {
					var body struct {
						Errcode    string `json:"errcode"`
						RetryAfter int64  `json:"retry_after_ms"`
					}
					json.Unmarshal(rec.Body.Bytes(), &body)
					if body.Errcode != "M_LIMIT_EXCEEDED" || body.RetryAfter <= 0 || rec.Header().Get("Retry-After") == "" {
						t.Fatalf("429 body %s, headers %v", rec.Body, rec.Header())
					}
				}
			}
			// Other routes are never limited.
			for range 3 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/_matrix/client/v3/login", nil))
				if rec.Code != 200 {
					t.Fatalf("GET /login limited: %d", rec.Code)
				}
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct{ remote, xff, want string }{
		{"192.0.2.1:5000", "", "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.7", "192.0.2.1"},
		{"127.0.0.1:5000", "198.51.100.7, 203.0.113.9", "203.0.113.9"},
		{"[::1]:5000", "203.0.113.9", "203.0.113.9"},
		{"127.0.0.1:5000", "garbage", "127.0.0.1"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := ratelimit.ClientIP(r); got != tt.want {
			t.Errorf("ClientIP(%s, %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}

// TestIPKey checks that IPv6 clients are limited by their /64: one host
// holds a whole /64 and could otherwise use a fresh bucket per request.
func TestIPKey(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.1:5000", "ip:192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "ip:2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:5000", "ip:2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:5000", "ip:2001:db8:1:3::/64"},
		{"[::ffff:192.0.2.1]:5000", "ip:::ffff:192.0.2.1"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if got := ratelimit.IPKey(r); got != tt.want {
			t.Errorf("IPKey(%s) = %s, want %s", tt.remote, got, tt.want)
		}
	}
}

// TestRegisterCountsOnlyFinishedRounds: the 401 rounds of User-Interactive
// Authentication do not use up the registration budget.
func TestRegisterCountsOnlyFinishedRounds(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rules: map[string]ratelimit.Rule{ratelimit.Register: {PerMinute: 1, Burst: 1}}, MaxKeys: 100})
	status := http.StatusUnauthorized
	h := l.Wrap(ratelimit.Register, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	do := func() int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/_matrix/client/v3/register", nil)
		req.RemoteAddr = "192.0.2.1:1234"
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for i := range 5 {
		if code := do(); code != http.StatusUnauthorized {
			t.Fatalf("UIA round %d: %d", i, code)
		}
	}
	status = http.StatusOK
	if code := do(); code != http.StatusOK {
		t.Fatalf("completed registration: %d", code)
	}
	if code := do(); code != http.StatusTooManyRequests {
		t.Fatalf("second registration in the same minute: %d, want 429", code)
	}
}

// TestRefusedRequestsTakeNothing: requests refused while a bucket is empty
// do not push the next token further away.
func TestRefusedRequestsTakeNothing(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rules: map[string]ratelimit.Rule{"k": {PerMinute: 60, Burst: 1}}})
	c := &clock{t: time.Unix(1000, 0)}
	l.SetClock(c.now)
	if ok, _ := l.Allow("k", "a"); !ok {
		t.Fatal("first request refused")
	}
	for i := range 10 {
		if ok, _ := l.Allow("k", "a"); ok {
			t.Fatalf("request %d allowed with an empty bucket", i)
		}
	}
	c.t = c.t.Add(time.Second)
	if ok, wait := l.Allow("k", "a"); !ok {
		t.Fatalf("refused after the 1s refill (wait %v): refused requests took tokens", wait)
	}
}

// TestAllowConcurrent: concurrent requests on one bucket get exactly the
// burst between them.
func TestAllowConcurrent(t *testing.T) {
	const burst, callers = 5, 50
	l := ratelimit.New(ratelimit.Options{Rules: map[string]ratelimit.Rule{"k": {PerMinute: 1, Burst: burst}}})
	c := &clock{t: time.Unix(1000, 0)}
	l.SetClock(c.now)
	var wg sync.WaitGroup
	var allowed atomic.Int32
	for range callers {
		wg.Go(func() {
			if ok, _ := l.Allow("k", "a"); ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != burst {
		t.Fatalf("%d of %d concurrent requests allowed, want the burst of %d", n, callers, burst)
	}
}

// TestEvictionKeepsBusyBuckets: when the map is full, idle buckets (refilled
// completely) go first, so flooding new keys does not reset a busy one.
func TestEvictionKeepsBusyBuckets(t *testing.T) {
	l := ratelimit.New(ratelimit.Options{Rules: map[string]ratelimit.Rule{"k": {PerMinute: 1, Burst: 1}}, MaxKeys: 10})
	c := &clock{t: time.Unix(1000, 0)}
	l.SetClock(c.now)
	for i := range 9 {
		if ok, _ := l.Allow("k", fmt.Sprint("idle", i)); !ok {
			t.Fatalf("idle key %d refused", i)
		}
	}
	c.t = c.t.Add(59 * time.Second)
	if ok, _ := l.Allow("k", "busy"); !ok {
		t.Fatal("busy key refused")
	}
	c.t = c.t.Add(2 * time.Second) // the idle buckets are full again, busy is not
	if ok, _ := l.Allow("k", "new"); !ok {
		t.Fatal("new key refused")
	}
	if n := l.Len(); n != 2 {
		t.Fatalf("%d buckets after eviction, want busy and new", n)
	}
	if ok, _ := l.Allow("k", "busy"); ok {
		t.Fatal("the busy bucket was evicted: its limit was reset")
	}
}
