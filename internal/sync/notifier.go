package sync

import (
	"context"
	gosync "sync"

	"maunium.net/go/mautrix/id"
)

// Notifier wakes long-polling /sync requests. Each user has a channel that
// is closed (and replaced) whenever something for that user commits, so a
// wake-up costs one map lookup per affected user, never a scan.
type Notifier struct {
	mu      gosync.Mutex
	waiters map[id.UserID]chan struct{}
}

// NewNotifier returns an empty notifier.
func NewNotifier() *Notifier {
	return &Notifier{waiters: map[id.UserID]chan struct{}{}}
}

// Wake signals every waiter of the given users.
func (n *Notifier) Wake(users ...id.UserID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range users {
		if ch, ok := n.waiters[u]; ok {
			close(ch)
			delete(n.waiters, u)
		}
	}
}

// WakeAll signals every waiter (used for node-wide changes).
func (n *Notifier) WakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for u, ch := range n.waiters {
		close(ch)
		delete(n.waiters, u)
	}
}

// Channel returns a channel that is closed at the user's next wake-up.
// Take it before checking for news, then wait on it, so nothing that
// commits in between is missed.
func (n *Notifier) Channel(user id.UserID) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.waiters[user]
	if !ok {
		ch = make(chan struct{})
		n.waiters[user] = ch
	}
	return ch
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
