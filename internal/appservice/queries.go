package appservice

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/ratelimit"
)

// Lookups of users and aliases that do not exist reach the appservices
// whose namespaces hold them, on requests anyone may make (a profile, an
// alias). Two things keep a client from making the node hammer a bridge
// with them: an appservice's "no" (or failure) for a user or alias is
// remembered for missTTL, in which the appservice is not asked again, and
// each lookup that does reach an appservice takes a token of the
// requester's ratelimit.AppserviceQuery bucket (Service.Limiter).
const (
	missTTL = time.Minute
	// maxMisses bounds the remembered answers.
	maxMisses = 10000
)

// RequesterLimiter limits the lookups a request makes the appservices
// answer; ratelimit.Limiter implements it.
type RequesterLimiter interface {
	AllowRequester(ctx context.Context, kind string) (bool, time.Duration)
}

// QueryUser asks the appservices whose user namespaces hold user (the
// exclusive holder first) whether it exists: GET /_matrix/app/v1/users/
// {userId}. It reports whether one answered 200, meaning it has created
// the user. Failures are logged and count as no; a requester past its
// rate limit is 429 M_LIMIT_EXCEEDED.
func (s *Service) QueryUser(ctx context.Context, user id.UserID) (bool, error) {
	path := "/_matrix/app/v1/users/" + url.PathEscape(string(user))
	return s.query(ctx, path, s.interested(func(reg *Registration) (bool, bool) {
		return reg.InterestedInUser(user), reg.ExclusiveUser(user)
	}))
}

// QueryAlias asks the appservices whose alias namespaces hold alias (the
// exclusive holder first) whether it exists: GET /_matrix/app/v1/rooms/
// {roomAlias}. It reports whether one answered 200, meaning it has created
// the room and the alias. Failures and limits are as QueryUser's.
func (s *Service) QueryAlias(ctx context.Context, alias id.RoomAlias) (bool, error) {
	path := "/_matrix/app/v1/rooms/" + url.PathEscape(string(alias))
	return s.query(ctx, path, s.interested(func(reg *Registration) (bool, bool) {
		return reg.InterestedInAlias(alias), reg.ExclusiveAlias(alias)
	}))
}

// interested lists the registrations with a url, not paused, that match
// says are interested, those holding the value exclusively first.
func (s *Service) interested(match func(*Registration) (interested, exclusive bool)) []*Registration {
	var exclusive, shared []*Registration
	for _, reg := range s.Registry.All() {
		in, ex := match(reg)
		switch {
		case reg.URL == "" || !in || s.Registry.Paused(reg.ID):
		case ex:
			exclusive = append(exclusive, reg)
		default:
			shared = append(shared, reg)
		}
	}
	return append(exclusive, shared...)
}

// query asks each registration in turn, but those whose "no" to path is
// remembered, until one answers 200.
func (s *Service) query(ctx context.Context, path string, regs []*Registration) (bool, error) {
	var ask []*Registration
	for _, reg := range regs {
		if !s.misses.recent(reg.ID, path) {
			ask = append(ask, reg)
		}
	}
	if len(ask) == 0 {
		return false, nil
	}
	if s.Limiter != nil {
		if ok, wait := s.Limiter.AllowRequester(ctx, ratelimit.AppserviceQuery); !ok {
			ms := max(wait.Milliseconds(), 1)
			return false, mxhttp.LimitExceeded("too many lookups of users and aliases of application services, retry in %d ms", ms).With("retry_after_ms", ms)
		}
	}
	for _, reg := range ask {
		status, _, err := s.call(ctx, reg, http.MethodGet, path, nil, nil)
		if err != nil {
			s.log.Warn("appservice query failed", "appservice", reg.ID, "path", path, "err", err)
		}
		if err == nil && status == http.StatusOK {
			s.misses.forget(reg.ID, path)
			return true, nil
		}
		if ctx.Err() == nil {
			s.misses.remember(reg.ID, path)
		}
	}
	return false, nil
}

// missCache remembers, per appservice and query path, a "no" until it
// expires: a bounded map that drops expired entries first when full.
type missCache struct {
	mu      sync.Mutex
	now     func() time.Time // time.Now unless a test sets it
	expires map[missKey]time.Time
}

type missKey struct{ appservice, path string }

func (c *missCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// recent reports whether the appservice said no to path within missTTL.
func (c *missCache) recent(asID, path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.expires[missKey{asID, path}]
	return ok && c.clock().Before(exp)
}

// remember records the appservice's no to path.
func (c *missCache) remember(asID, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	if c.expires == nil {
		c.expires = map[missKey]time.Time{}
	}
	if len(c.expires) >= maxMisses {
		c.evictLocked(now)
	}
	c.expires[missKey{asID, path}] = now.Add(missTTL)
}

// forget drops the appservice's remembered no to path.
func (c *missCache) forget(asID, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.expires, missKey{asID, path})
}

// evictLocked drops the expired entries and, when that frees too little,
// arbitrary ones until a tenth of the room is free (an appservice asked
// again early is no worse than without the cache).
func (c *missCache) evictLocked(now time.Time) {
	for k, exp := range c.expires {
		if !now.Before(exp) {
			delete(c.expires, k)
		}
	}
	for k := range c.expires {
		if len(c.expires) < maxMisses*9/10 {
			break
		}
		delete(c.expires, k)
	}
}
