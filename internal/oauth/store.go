package oauth

import (
	"sync"
	"time"
)

// expiring is a bounded in-memory map whose entries live for ttl.
type expiring[V any] struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	items map[string]expiringEntry[V]
}

type expiringEntry[V any] struct {
	v       V
	expires time.Time
}

func newExpiring[V any](ttl time.Duration, max int) *expiring[V] {
	return &expiring[V]{ttl: ttl, max: max, items: map[string]expiringEntry[V]{}}
}

// put stores v under key for the store's lifetime. When the store is
// full of live entries, an arbitrary one makes room: memory stays bounded
// under a flood, at the cost of someone's pending login.
func (s *expiring[V]) put(key string, v V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) >= s.max {
		s.sweepLocked(time.Now())
		for k := range s.items {
			if len(s.items) < s.max {
				break
			}
			delete(s.items, k)
		}
	}
	s.items[key] = expiringEntry[V]{v: v, expires: time.Now().Add(s.ttl)}
}

// get returns the live entry under key.
func (s *expiring[V]) get(key string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.getLocked(key)
}

func (s *expiring[V]) getLocked(key string) (V, bool) {
	e, ok := s.items[key]
	if !ok || time.Now().After(e.expires) {
		delete(s.items, key)
		var zero V
		return zero, false
	}
	return e.v, true
}

// take removes and returns the live entry under key, so that only one
// caller gets it.
func (s *expiring[V]) take(key string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.getLocked(key)
	delete(s.items, key)
	return v, ok
}

// update runs fn on the live entry under key, keeping its expiry, and
// reports whether there was one.
func (s *expiring[V]) update(key string, fn func(*V)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[key]
	if !ok || time.Now().After(e.expires) {
		delete(s.items, key)
		return false
	}
	fn(&e.v)
	s.items[key] = e
	return true
}

// delete removes key.
func (s *expiring[V]) delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, key)
}

// deleteFunc removes every entry for which match is true.
func (s *expiring[V]) deleteFunc(match func(V) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.items {
		if match(e.v) {
			delete(s.items, k)
		}
	}
}

func (s *expiring[V]) sweepLocked(now time.Time) {
	for k, e := range s.items {
		if now.After(e.expires) {
			delete(s.items, k)
		}
	}
}
