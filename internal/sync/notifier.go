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
	var woken []*waitList
	n.mu.Lock()
	for _, u := range users {
		if wl, ok := n.waiters[u]; ok {
			close(wl.ch)
			delete(n.waiters, u)
			if len(wl.parked) > 0 {
				woken = append(woken, wl)
			}
		}
	}
	n.mu.Unlock()
	runParked(woken)
}

// WakeAll signals every waiter (used for node-wide changes).
func (n *Notifier) WakeAll() {
	var woken []*waitList
	n.mu.Lock()
	for u, wl := range n.waiters {
		close(wl.ch)
		delete(n.waiters, u)
		if len(wl.parked) > 0 {
			woken = append(woken, wl)
		}
	}
	n.mu.Unlock()
	runParked(woken)
}

func runParked(woken []*waitList) {
	for _, wl := range woken {
		for w := range wl.parked {
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
// Channel returned for user, and returns a function that takes it back.
// fn runs on the waking goroutine and must not block. ok is false (and
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
