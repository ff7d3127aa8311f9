package storage

import (
	"sort"
	"sync"
)

// PosLog keeps the newest changes of a kind in stream-position order, so
// that a reader asking what changed in a window (since, to] is answered
// from memory without a query. It holds every change with a position
// above its floor: a window starting before the floor is not covered, and
// the reader reads the database, which stays the durable record. Add
// changes from a write's AfterCommit function: they run in commit order
// and before the positions become visible, so a reader's window never
// ends past a change the log lacks.
type PosLog[T any] struct {
	mu      sync.Mutex
	entries []posEntry[T]
	floor   int64
	max     int
}

type posEntry[T any] struct {
	pos int64
	v   T
}

// NewPosLog returns a log that keeps at most max changes: past it, the
// older half is dropped and the floor rises to the newest dropped change.
// Call Start with the committed position before the first reader.
func NewPosLog[T any](max int) *PosLog[T] {
	return &PosLog[T]{max: max}
}

// Start raises the floor to pos: the changes committed up to pos are in
// the database only (those the log was given before are kept).
func (l *PosLog[T]) Start(pos int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.floor = max(l.floor, pos)
}

// Add records a change committed at pos.
func (l *PosLog[T]) Add(pos int64, v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pos <= l.floor {
		return
	}
	if len(l.entries) >= l.max {
		l.dropOldest(max(len(l.entries)/2, 1))
	}
	// Positions arrive in order; a change out of order goes to its place.
	i := len(l.entries)
	for i > 0 && l.entries[i-1].pos > pos {
		i--
	}
	l.entries = append(l.entries, posEntry[T]{})
	copy(l.entries[i+1:], l.entries[i:])
	l.entries[i] = posEntry[T]{pos, v}
}

// dropOldest forgets the n oldest changes and any others at the last
// dropped position, raising the floor to that position.
func (l *PosLog[T]) dropOldest(n int) {
	l.floor = l.entries[n-1].pos
	for n < len(l.entries) && l.entries[n].pos <= l.floor {
		n++
	}
	l.entries = append(l.entries[:0], l.entries[n:]...)
}

// Window returns the changes committed in (since, to], oldest first, and
// whether the log covers that window (false: read the database). It
// allocates only when there are changes.
func (l *PosLog[T]) Window(since, to int64) ([]T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if since < l.floor {
		return nil, false
	}
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].pos > since })
	var out []T
	for _, e := range l.entries[i:] {
		if e.pos > to {
			break
		}
		out = append(out, e.v)
	}
	return out, true
}
