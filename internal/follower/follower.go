// Package follower runs the loop that the node's event followers share
// (the ledger, contracts, analytics): a step function, called at start, on
// each wake-up and every interval, until it reports that nothing more is
// waiting. A follower keeps its own mark in its own table and moves it in
// the same transaction as its effects; this package only schedules the
// steps, off the send path.
package follower

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// StepFunc does one bounded piece of a follower's work and reports whether
// more may be waiting.
type StepFunc func(ctx context.Context) (more bool, err error)

// Follower calls its step function in one goroutine between Start and
// Close. Its methods are safe for concurrent use.
type Follower struct {
	name     string
	step     StepFunc
	interval time.Duration
	log      *slog.Logger
	wake     chan struct{}

	mu   sync.Mutex
	stop func()
}

// New returns a follower named name (for its log lines) that runs step at
// start, on each Wake and every interval.
func New(name string, interval time.Duration, log *slog.Logger, step StepFunc) *Follower {
	if log == nil {
		log = slog.Default()
	}
	return &Follower{name: name, step: step, interval: interval, log: log, wake: make(chan struct{}, 1)}
}

// Wake asks for a round of steps soon. It never blocks: wake-ups that come
// while one is pending are merged.
func (f *Follower) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Start runs the follower until Close. A second Start before Close does
// nothing.
func (f *Follower) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.run(ctx)
	}()
	f.stop = func() {
		cancel()
		<-done
	}
}

// Close stops the follower and waits for the step in progress to end.
func (f *Follower) Close() {
	f.mu.Lock()
	stop := f.stop
	f.stop = nil
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// CatchUp runs steps until one reports that nothing more is waiting, or
// fails. Tests call it to catch up at once.
func (f *Follower) CatchUp(ctx context.Context) error {
	for {
		more, err := f.step(ctx)
		if err != nil || !more {
			return err
		}
	}
}

func (f *Follower) run(ctx context.Context) {
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		if err := f.CatchUp(ctx); err != nil && ctx.Err() == nil {
			f.log.Error(f.name+": follow events", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		}
	}
}
