package remote

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Cache keeps the answers of another server for a short time. Concurrent
// Gets of one key that miss share one fetch. An answer is kept when the
// fetch succeeded, or failed with the remote's own 403 or 404 (so that a
// missing profile is not asked for again at once); failures to reach the
// server are not kept. Safe for concurrent use.
type Cache[K comparable, V any] struct {
	ttl time.Duration
	// refusalTTL is how long a refusal (403, 404) is kept; ttl unless
	// KeepRefusals changed it.
	refusalTTL time.Duration
	max        int
	now        func() time.Time

	mu      sync.Mutex
	entries map[K]*entry[V]
}

type entry[V any] struct {
	done    chan struct{} // closed when the fetch ends
	value   V
	err     error
	expires time.Time
}

// NewCache returns a cache keeping answers for ttl, at most max of them.
func NewCache[K comparable, V any](ttl time.Duration, max int) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, refusalTTL: ttl, max: max, now: time.Now, entries: map[K]*entry[V]{}}
}

// KeepRefusals sets how long a refusal (the remote's 403 or 404) is kept,
// for answers whose refusal may change sooner than the answer itself (0:
// not kept). Call it before the first Get.
func (c *Cache[K, V]) KeepRefusals(d time.Duration) { c.refusalTTL = d }

// Get returns the kept answer for key, or fetches it. The fetch runs on a
// context that ctx's cancellation does not end (other callers may be
// waiting for it), bounded by timeout; Get itself returns when ctx ends.
func (c *Cache[K, V]) Get(ctx context.Context, key K, timeout time.Duration, fetch func(ctx context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && isDone(e) && c.now().After(e.expires) {
		delete(c.entries, key)
		ok = false
	}
	if !ok {
		e = &entry[V]{done: make(chan struct{})}
		c.prune()
		c.entries[key] = e
		go c.fill(context.WithoutCancel(ctx), key, e, timeout, fetch)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e.value, e.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// fill runs the fetch of e and keeps or drops its answer.
func (c *Cache[K, V]) fill(ctx context.Context, key K, e *entry[V], timeout time.Duration, fetch func(ctx context.Context) (V, error)) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	value, err := fetch(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	e.value, e.err, e.expires = value, err, c.now().Add(c.ttl)
	if err != nil && isAnswer(err) {
		e.expires = c.now().Add(c.refusalTTL)
	}
	if err != nil && (!isAnswer(err) || c.refusalTTL <= 0) && c.entries[key] == e {
		delete(c.entries, key)
	}
	close(e.done)
}

// isAnswer reports whether err is the remote's own refusal, worth keeping.
func isAnswer(err error) bool {
	me, ok := errors.AsType[*mxhttp.Error](err)
	return ok && (me.Status == http.StatusNotFound || me.Status == http.StatusForbidden)
}

// prune makes room for one more entry: expired answers go first, then,
// if the cache is still full, any finished answer. c.mu is held.
func (c *Cache[K, V]) prune() {
	if len(c.entries) < c.max {
		return
	}
	now := c.now()
	for k, e := range c.entries {
		if isDone(e) && now.After(e.expires) {
			delete(c.entries, k)
		}
	}
	for k, e := range c.entries {
		if len(c.entries) < c.max {
			return
		}
		if isDone(e) {
			delete(c.entries, k)
		}
	}
}

func isDone[V any](e *entry[V]) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
