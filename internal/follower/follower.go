// Package follower runs the loop that the node's event followers share
// (the ledger, its keys log, contracts, analytics, automation,
// moderation): a step function, called at start, on each wake-up and
// every interval, until it reports that nothing more is waiting, with
// what a follower does beside its steps (AfterRound, Every) in the same
// goroutine. A follower keeps its Mark in its own table and moves it in
// the same transaction as its effects; it reads the committed events
// with rooms.Engine.CommittedEvents, which serves the newest from memory,
// so a send's wake-ups cost its followers no query. A follower's OnEvent
// hook wakes it only for an event it may act on (RoomSet.MayHave), so an
// event of no followed room costs no round; the next round still reads
// everything after the mark. Steps run off the send path.
package follower

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
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

	// Set before Start: afterRound runs after each round of steps, every
	// on its own ticker.
	afterRound    func(ctx context.Context) error
	every         func(ctx context.Context) error
	everyInterval time.Duration
	// wakeEvery, when set, lets only every wakeEvery-th Wake through;
	// wakes counts those held back since the last round.
	wakeEvery int64
	wakes     atomic.Int64
	// woken counts the calls of Wake, for Woken.
	woken atomic.Int64

	mu   sync.Mutex
	stop func()

	// stepMu serialises steps: the follower's own rounds and those a
	// reader runs to catch up (Step, CatchUp); two at once would apply
	// the same events from the same mark.
	stepMu sync.Mutex
}

// New returns a follower named name (for its log lines) that runs step at
// start, on each Wake and every interval.
func New(name string, interval time.Duration, log *slog.Logger, step StepFunc) *Follower {
	if log == nil {
		log = slog.Default()
	}
	return &Follower{name: name, step: step, interval: interval, log: log, wake: make(chan struct{}, 1)}
}

// AfterRound has the follower call fn after each round of steps (at
// start, on each wake-up and every interval), for work that follows the
// steps' results, such as saving what they learnt. Call it before Start.
func (f *Follower) AfterRound(fn func(ctx context.Context) error) { f.afterRound = fn }

// Every has the follower also call fn every interval, between rounds of
// steps, for work on a clock rather than on events, such as schedules.
// Call it before Start.
func (f *Follower) Every(interval time.Duration, fn func(ctx context.Context) error) {
	f.every, f.everyInterval = fn, interval
}

// WakeEvery has Wake ask for a round only once n wake-ups have come since
// the last round; the events of fewer wait for the interval. It is for a
// follower whose readers catch it up themselves when they need it exact
// (the search index): a lone send then costs it no commit of its own,
// whose fdatasync would delay the next send's. Call it before Start.
func (f *Follower) WakeEvery(n int) { f.wakeEvery = int64(n) }

// Wake asks for a round of steps soon. It never blocks: wake-ups that come
// while one is pending are merged.
func (f *Follower) Wake() {
	f.woken.Add(1)
	if f.wakeEvery > 1 && f.wakes.Add(1) < f.wakeEvery {
		return
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Woken returns how many times Wake was called: tests of a follower's
// OnEvent hook count with it the events that asked for a round.
func (f *Follower) Woken() int64 { return f.woken.Load() }

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
		more, err := f.Step(ctx)
		if err != nil || !more {
			return err
		}
	}
}

// Step runs one step, never beside another of this follower's, and
// reports whether more may be waiting. A reader that must see every
// committed event (a search) calls it to catch the follower up.
func (f *Follower) Step(ctx context.Context) (more bool, err error) {
	f.stepMu.Lock()
	defer f.stepMu.Unlock()
	return f.step(ctx)
}

// wakeGap is the least time between the starts of two rounds that
// wake-ups ask for: a wake-up within it of the last round waits out the
// rest, and every wake-up that comes meanwhile joins the one round. A
// lone event is followed soon (wakeSettle); a burst of sends, which wakes the
// followers at each commit, is followed in rounds of many events, each
// with one transaction for a follower's effects and mark instead of one
// for each commit.
const wakeGap = 50 * time.Millisecond

// wakeSettle is the least time a round waits after the wake-up that asks
// for it. A send wakes its followers once it has committed, just when the
// long-polls it woke are being built and answered: on a machine of a few
// cores the followers' queries and writes (the ledger's state changes, the
// analytics' last message and its transaction, a second commit with its
// own fdatasync) competed with those answers for the CPU. Waiting a little
// moves them out of that window.
const wakeSettle = 20 * time.Millisecond

func (f *Follower) run(ctx context.Context) {
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	var everyC <-chan time.Time
	if f.every != nil {
		every := time.NewTicker(f.everyInterval)
		defer every.Stop()
		everyC = every.C
	}
	gap := time.NewTimer(wakeGap)
	gap.Stop()
	for {
		last := time.Now()
		f.wakes.Store(0)
		if err := f.CatchUp(ctx); err != nil && ctx.Err() == nil {
			f.log.Error(f.name+": follow events", "err", err)
		}
		if f.afterRound != nil {
			if err := f.afterRound(ctx); err != nil && ctx.Err() == nil {
				f.log.Error(f.name+": after following events", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
			gap.Reset(max(wakeGap-time.Since(last), wakeSettle))
			select {
			case <-ctx.Done():
				return
			case <-gap.C:
			}
			// The round that follows reads every event visible
			// now: the wake-ups of those events are answered.
			select {
			case <-f.wake:
			default:
			}
		case <-tick.C:
		case <-everyC:
			if err := f.every(ctx); err != nil && ctx.Err() == nil {
				f.log.Error(f.name+": scheduled work", "err", err)
			}
		}
	}
}
