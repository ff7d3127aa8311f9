// Package guard contains the panics of an in-process bridge: Go cannot
// recover a panic from outside the goroutine it happens in, and one that
// is not recovered stops the whole node. So every goroutine a bridge's
// host or network connector starts, and every connector method bridgev2
// may call from a goroutine of its own that does not recover (Connect,
// from its reconnect loop), defers Recover of the run's Guard. Recover
// turns the panic into the run's failure: the host stops the bridge and
// returns the panic as its error, and the supervisor starts it again with
// backoff while the node goes on serving.
//
// bridgev2 recovers the panics of its portal event handlers, of Matrix
// event handlers and of commands itself (the event or command fails, the
// bridge goes on); a panic in bridgev2's own code outside those still
// stops the process, as only a separate process could contain it.
package guard

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
)

// Guard collects the first panic of one run of a bridge.
type Guard struct {
	once   sync.Once
	failed chan struct{}
	err    error
}

// New returns a guard that has seen no panic.
func New() *Guard { return &Guard{failed: make(chan struct{})} }

// PanicError is a recovered panic: its value and the stack it happened on.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack) }

// Recover, deferred, recovers a panic and fails the run with it. On a nil
// guard it does nothing, so the panic goes on as without a guard.
func (g *Guard) Recover() {
	if g == nil {
		return
	}
	if v := recover(); v != nil {
		g.fail(&PanicError{Value: v, Stack: debug.Stack()})
	}
}

// Go runs fn in a goroutine of its own under the guard.
func (g *Guard) Go(fn func()) {
	go func() {
		defer g.Recover()
		fn()
	}()
}

func (g *Guard) fail(err error) {
	g.once.Do(func() {
		g.err = err
		close(g.failed)
	})
}

// Failed is closed once a panic has been recovered; Err then says which.
func (g *Guard) Failed() <-chan struct{} { return g.failed }

// Err is the first recovered panic, nil before one.
func (g *Guard) Err() error {
	select {
	case <-g.failed:
		return g.err
	default:
		return nil
	}
}

type contextKey struct{}

// NewContext returns ctx carrying g, as the host hands it to the
// connector's Start.
func NewContext(ctx context.Context, g *Guard) context.Context {
	return context.WithValue(ctx, contextKey{}, g)
}

// FromContext returns the guard ctx carries, or nil (whose Recover does
// nothing and whose Go is a plain goroutine).
func FromContext(ctx context.Context) *Guard {
	g, _ := ctx.Value(contextKey{}).(*Guard)
	return g
}
