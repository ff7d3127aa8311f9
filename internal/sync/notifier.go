package sync

import (
	"context"
	gosync "sync"

	"maunium.net/go/mautrix/id"
)

// Notifier wakes long-polling /sync requests. Each user has a channel that
// is closed (and replaced) whenever something for that user commits, so a
// wake-up costs one map lookup per affected user, never a scan. Parked
// long-polls, which have no goroutine to wait on the channel, register a
// function to run at the wake-up instead (OnWake).
type Notifier struct {
	mu      gosync.Mutex
	waiters map[id.UserID]*waitList

	// run, when set, runs the functions of a wake-up with many parked
	// long-polls off the waking goroutine (the database writer, whose
	// next commit would wait for them).
	run func(func())
}

// waitList is what waits for one user's next wake-up.
type waitList struct {
	ch     chan struct{}
	parked map[*wakeFunc]struct{}
}

type wakeFunc struct{ fn func() }

// NewNotifier returns an empty notifier.
func NewNotifier() *Notifier {
	return &Notifier{waiters: map[id.UserID]*waitList{}}
}

// Wake signals every waiter of the given users.
func (n *Notifier) Wake(users ...id.UserID) {
	var woken []map[*wakeFunc]struct{}
	parked := 0
	n.mu.Lock()
	for _, u := range users {
		if wl, ok := n.waiters[u]; ok {
			woken, parked = n.take(u, wl, woken, parked)
		}
	}
	n.mu.Unlock()
	n.runParked(woken, parked)
}

// WakeAll signals every waiter (used for node-wide changes).
func (n *Notifier) WakeAll() {
	var woken []map[*wakeFunc]struct{}
	parked := 0
	n.mu.Lock()
	for u, wl := range n.waiters {
		woken, parked = n.take(u, wl, woken, parked)
	}
	n.mu.Unlock()
	n.runParked(woken, parked)
}

// take closes the user's channel and adds its parked functions to
// woken; n.mu is held. The functions' map leaves the list, so that a
// cancel from now on (OnWake) finds nothing to take back, and only the
// wake-up reads it.
func (n *Notifier) take(u id.UserID, wl *waitList, woken []map[*wakeFunc]struct{}, parked int) ([]map[*wakeFunc]struct{}, int) {
	close(wl.ch)
	delete(n.waiters, u)
	if len(wl.parked) > 0 {
		woken = append(woken, wl.parked)
		parked += len(wl.parked)
		wl.parked = nil
	}
	return woken, parked
}

// inlineParked is how many parked functions a wake-up runs on the waking
// goroutine; more are left to run (each is a few locks and a queued job,
// but 10,000 of them held the database writer for milliseconds).
const inlineParked = 64

func (n *Notifier) runParked(woken []map[*wakeFunc]struct{}, parked int) {
	if parked <= inlineParked || n.run == nil {
		runAll(woken)
		return
	}
	n.run(func() { runAll(woken) })
}

func runAll(woken []map[*wakeFunc]struct{}) {
	for _, m := range woken {
		for w := range m {
			w.fn()
		}
	}
}

// Channel returns a channel that is closed at the user's next wake-up.
// Take it before checking for news, then wait on it, so nothing that
// commits in between is missed.
func (n *Notifier) Channel(user id.UserID) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.list(user).ch
}

func (n *Notifier) list(user id.UserID) *waitList {
	wl, ok := n.waiters[user]
	if !ok {
		wl = &waitList{ch: make(chan struct{})}
		n.waiters[user] = wl
	}
	return wl
}

// Wait blocks until the user is woken or ctx ends.
func (n *Notifier) Wait(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// OnWake registers fn to run at the wake-up that closes ch, a channel
// Channel returned for user, and returns a function that takes it back
// (unless the wake-up has begun). fn runs on the waking goroutine, or
// for a wake-up of many on a worker, and must not block. ok is false (and
// nothing is registered) if ch has closed already.
func (n *Notifier) OnWake(user id.UserID, ch <-chan struct{}, fn func()) (cancel func(), ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	wl := n.waiters[user]
	if wl == nil || wl.ch != ch {
		return nil, false
	}
	if wl.parked == nil {
		wl.parked = map[*wakeFunc]struct{}{}
	}
	w := &wakeFunc{fn}
	wl.parked[w] = struct{}{}
	return func() {
		n.mu.Lock()
		delete(wl.parked, w)
		n.mu.Unlock()
	}, true
}
