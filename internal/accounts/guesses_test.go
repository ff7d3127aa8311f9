package accounts_test

import (
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// guessBurst is the login burst the guess tests run with; the rate is one
// a minute, so a test's clock decides when a bucket refills.
const guessBurst = 3

// testClock is a clock the test moves forward while the node reads it.
type testClock struct{ unixNano atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Unix(0, c.unixNano.Load()) }
func (c *testClock) advance(d time.Duration) { c.unixNano.Add(int64(d)) }

// startLimited starts a node whose login limit is guessBurst at once and
// one a minute, on a clock the test moves.
func startLimited(t *testing.T, opts ...testnode.Option) (*testnode.Node, *testClock) {
	t.Helper()
	opts = append([]testnode.Option{func(c *config.Config) {
		c.RateLimit = true
		c.RateLimitLoginPerMin, c.RateLimitLoginBurst = 1, guessBurst
		c.RateLimitRegPerMin, c.RateLimitRegBurst = 1000, 1000
	}}, opts...)
	n := testnode.Start(t, testnode.SQLite, opts...)
	clock := &testClock{}
	clock.unixNano.Store(time.Unix(1_000_000, 0).UnixNano())
	n.RateLimit.SetClock(clock.now)
	return n, clock
}

// from sends the request as coming from ip (the node trusts
// X-Forwarded-For from its loopback peer, as from a local proxy).
func from(ip string) testnode.RequestOption { return testnode.Header("X-Forwarded-For", ip) }

// wantLimited fails unless r is a 429 M_LIMIT_EXCEEDED with retry_after_ms.
func wantLimited(t *testing.T, r *testnode.Response) {
	t.Helper()
	m := wantErr(t, r, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	if ms, _ := m["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("429 without a positive retry_after_ms: %s", r.Body)
	}
}

// TestPasswordGuessesAreLimited: every endpoint that checks a password
// shares the login limit, by account and by client IP, with and without
// an access token: once a bucket is empty even the right password is
// refused until it refills, while other accounts and other IPs go on.
func TestPasswordGuessesAreLimited(t *testing.T) {
	n, clock := startLimited(t)
	// Each path sends one request that checks password for user, from
	// ip; c is the user's logged-in client, for the paths that need one.
	paths := []struct {
		name  string
		check func(c *mautrix.Client, ip, password string) *testnode.Response
	}{
		{"login", func(c *mautrix.Client, ip, password string) *testnode.Response {
			return n.Do(t, "POST", loginPath, "", map[string]any{"type": "m.login.password",
				"identifier": map[string]any{"type": "m.id.user", "user": string(c.UserID)}, "password": password}, from(ip))
		}},
		{"password change without token", func(c *mautrix.Client, ip, password string) *testnode.Response {
			return n.Do(t, "POST", testnode.V3+"/account/password", "", map[string]any{"new_password": testnode.Password,
				"logout_devices": false, "auth": passwordAuth(string(c.UserID), password, "")}, from(ip))
		}},
		{"password change", func(c *mautrix.Client, ip, password string) *testnode.Response {
			return testnode.Call(t, c, "POST", testnode.V3+"/account/password", map[string]any{"new_password": testnode.Password,
				"logout_devices": false, "auth": passwordAuth(string(c.UserID), password, "")}, from(ip))
		}},
		{"deactivation without token", func(c *mautrix.Client, ip, password string) *testnode.Response {
			return n.Do(t, "POST", testnode.V3+"/account/deactivate", "", map[string]any{
				"auth": passwordAuth(string(c.UserID), password, "")}, from(ip))
		}},
		{"device deletion", func(c *mautrix.Client, ip, password string) *testnode.Response {
			return testnode.Call(t, c, "POST", testnode.V3+"/delete_devices", map[string]any{"devices": []string{},
				"auth": passwordAuth(string(c.UserID), password, "")}, from(ip))
		}},
		{"login token", func(c *mautrix.Client, ip, password string) *testnode.Response {
			return testnode.Call(t, c, "POST", "/_matrix/client/v1/login/get_token", map[string]any{
				"auth": passwordAuth(string(c.UserID), password, "")}, from(ip))
		}},
	}
	for i, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			ipA, ipB := fmt.Sprintf("198.51.100.%d", i), fmt.Sprintf("203.0.113.%d", i)
			alice, bob, carol := n.Register("alice"), n.Register("bob"), n.Register("carol")
			for g := range guessBurst {
				if r := p.check(alice, ipA, "wrong"); r.ErrCode() != "M_FORBIDDEN" {
					t.Fatalf("wrong guess %d within the burst: %d %s", g, r.Status, r.Body)
				}
			}
			wantLimited(t, p.check(alice, ipA, "wrong"))
			wantLimited(t, p.check(alice, ipA, testnode.Password))
			// Alice's bucket is empty whatever the IP; ipA's whatever the
			// account; bob from ipB is untouched by both.
			wantLimited(t, p.check(alice, ipB, testnode.Password))
			wantLimited(t, p.check(bob, ipA, testnode.Password))
			wantOK(t, p.check(bob, ipB, testnode.Password))

			// Once the buckets have refilled, alice and ipA are welcome again.
			clock.advance(guessBurst * time.Minute)
			wantOK(t, p.check(alice, ipA, testnode.Password))
			wantOK(t, p.check(carol, ipA, testnode.Password))
		})
	}
}

// TestRegistrationTokenGuessesAreLimited: checking a registration token,
// on the validity endpoint or in the registration's UIA stage, counts
// against the client IP's login limit (a 401 for a wrong token used to be
// given back to the registration limit, leaving guesses unlimited).
func TestRegistrationTokenGuessesAreLimited(t *testing.T) {
	n, clock := startLimited(t, func(c *config.Config) { c.OpenRegistration, c.RegistrationTokens = false, true })
	tok, err := n.Accounts.CreateRegistrationToken(t.Context(), accounts.RegistrationToken{})
	if err != nil {
		t.Fatal(err)
	}
	validity := func(ip, token string) *testnode.Response {
		return n.Do(t, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token="+url.QueryEscape(token), "", nil, from(ip))
	}
	register := func(ip, username, token string) *testnode.Response {
		body := map[string]any{"username": username, "password": testnode.Password}
		sess, _ := uiaSession(t, n, "POST", registerPath, "", body)
		body["auth"] = map[string]any{"type": "m.login.registration_token", "token": token, "session": sess}
		return n.Do(t, "POST", registerPath, "", body, from(ip))
	}

	t.Run("validity", func(t *testing.T) {
		for g := range guessBurst {
			if m := wantOK(t, validity("198.51.100.1", "wrong")); m["valid"] != false {
				t.Fatalf("guess %d: %v", g, m)
			}
		}
		wantLimited(t, validity("198.51.100.1", "wrong"))
		wantLimited(t, validity("198.51.100.1", tok.Token))
		if m := wantOK(t, validity("198.51.100.2", tok.Token)); m["valid"] != true {
			t.Fatalf("another IP, the right token: %v", m)
		}
	})
	t.Run("registration", func(t *testing.T) {
		for g := range guessBurst {
			r := register("203.0.113.1", "dave", "wrong")
			if r.Status != http.StatusUnauthorized || r.ErrCode() != "M_UNAUTHORIZED" {
				t.Fatalf("wrong token %d within the burst: %d %s", g, r.Status, r.Body)
			}
		}
		wantLimited(t, register("203.0.113.1", "dave", "wrong"))
		wantLimited(t, register("203.0.113.1", "dave", tok.Token))
		wantOK(t, register("203.0.113.2", "erin", tok.Token))
		clock.advance(time.Minute)
		wantOK(t, register("203.0.113.1", "dave", tok.Token))
	})
}
