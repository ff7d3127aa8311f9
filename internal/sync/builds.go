package sync

import (
	"context"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"fmt"
	"runtime"
	"runtime/debug"
	gosync "sync"

	"maunium.net/go/mautrix/id"
)

// A /sync response depends on who asks (user and device), from where
// (since), how (filter, full_state, the state mode) and on what has
// committed when it is built. When one send wakes many long-polls that
// ask the same (a client with several connections, or clients sharing a
// token), they share one build and one encoding: builds runs at most one
// build per buildKey at a time, and a request joins a build in flight
// only if that build began after the request's notifier channel was
// taken, so the shared answer is as new as one built for the request
// alone.
//
// Builds run on the workers of a workQueue, never on the connection's
// goroutine: a build reaches deep into the database driver, and the
// stack it grows would stay with the connection's goroutine for as long
// as the long-poll then waits (stacks shrink only at garbage
// collection); nor on a goroutine of its own, which would grow its stack
// again for each build. A waiting /sync thus holds a small stack, and at
// most maxBuilds builds run at once, so 10,000 long-polls woken together
// queue for the CPU instead of all holding half-built responses.

// buildKey is what a /sync response depends on besides the moment it is
// built.
type buildKey struct {
	user   id.UserID
	device id.DeviceID
	since  Token
	filter string // the filter parameter as given
	full   bool
	mode   StateMode
}

// flight is one build, shared by every request that joined it.
type flight struct {
	wake  <-chan struct{} // the notifier channel taken before the build began
	done  chan struct{}   // closed when resp and err are set
	resp  *Response
	err   error
	users int             // requests sharing the build; final once done
	then  []func(*flight) // run once done (join)

	encoded func() ([]byte, error) // resp as JSON, encoded once
}

// builds coalesces /sync builds (see the comment above buildKey).
type builds struct {
	mu       gosync.Mutex
	inFlight map[buildKey]*flight
	workers  *workQueue // runs the builds do starts
}

// maxBuilds bounds the /sync builds that run at once: the workers of
// the Service's workQueue.
var maxBuilds = max(16, 4*runtime.GOMAXPROCS(0))

func newBuilds(workers *workQueue) *builds {
	return &builds{inFlight: map[buildKey]*flight{}, workers: workers}
}

// do returns the build for key that began after wake was taken,
// starting one with build on a worker if none is in flight. The build
// runs to its end even if ctx ends first (other requests may share it);
// do then returns ctx's error. It must not be called from a worker.
func (b *builds) do(ctx context.Context, key buildKey, wake <-chan struct{}, build func(context.Context) (*Response, error)) (*flight, error) {
	b.mu.Lock()
	f, start := b.flight(key, wake)
	b.mu.Unlock()
	if start {
		ctx := context.WithoutCancel(ctx)
		b.workers.add(func() { b.run(ctx, key, f, build) })
	}
	select {
	case <-f.done:
		return f, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// joinHere is do for a caller that does not wait and whose goroutine may
// run the build itself (a parked long-poll's resume, on a worker, whose
// stack stays grown for the next build). When no build for key began
// after wake, it runs one on the caller's goroutine and returns it,
// done: no hop to another goroutine and back. When one did (it is still
// running), then runs with it once it is done, on the goroutine that
// runs it (then must not block), and joinHere returns nil.
func (b *builds) joinHere(ctx context.Context, key buildKey, wake <-chan struct{}, build func(context.Context) (*Response, error), then func(*flight)) *flight {
	b.mu.Lock()
	if f := b.inFlight[key]; f != nil && f.wake == wake {
		// Still running: a build leaves inFlight before it is done.
		f.users++
		f.then = append(f.then, then)
		b.mu.Unlock()
		return nil
	}
	f := b.start(key, wake)
	b.mu.Unlock()
	b.run(context.WithoutCancel(ctx), key, f, build)
	return f
}

// flight returns the build to join, and whether the caller must run it;
// b.mu is held.
func (b *builds) flight(key buildKey, wake <-chan struct{}) (f *flight, start bool) {
	f = b.inFlight[key]
	if f == nil || f.wake != wake {
		return b.start(key, wake), true
	}
	f.users++
	return f, false
}

// start records a new build for key with its first user; b.mu is held.
func (b *builds) start(key buildKey, wake <-chan struct{}) *flight {
	f := &flight{wake: wake, done: make(chan struct{}), users: 1}
	b.inFlight[key] = f
	return f
}

func (b *builds) run(ctx context.Context, key buildKey, f *flight, build func(context.Context) (*Response, error)) {
	resp, err := recovered(func() (*Response, error) { return build(ctx) })
	f.resp, f.err = resp, err
	f.encoded = gosync.OnceValues(func() ([]byte, error) {
		return jsonv2.Marshal(resp, json.DefaultOptionsV1())
	})
	b.mu.Lock()
	if b.inFlight[key] == f {
		delete(b.inFlight, key)
	}
	close(f.done)
	then := f.then
	f.then = nil
	b.mu.Unlock()
	for _, fn := range then {
		fn(f)
	}
}

// answer is the flight's response as a handler returns it: the response
// itself when one request asked for it, its JSON encoded once when
// several share it.
func (f *flight) answer() (any, error) {
	if f.users == 1 {
		return f.resp, nil
	}
	b, err := f.encoded()
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}

// recovered runs fn and turns a panic into an error (with the stack), as
// the HTTP server's recovery would have on the request's own goroutine.
func recovered[T any](fn func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return fn()
}
