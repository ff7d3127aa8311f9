package ephemeral

import "sync/atomic"

// lastWrite tracks the highest stream position written to a table, so an
// incremental /sync with nothing newer than its token skips the query. It
// starts at the position visible when the service started; writers note
// their position before the commit makes it visible.
type lastWrite struct{ pos atomic.Int64 }

// note records a write at pos.
func (l *lastWrite) note(pos int64) {
	for {
		cur := l.pos.Load()
		if pos <= cur || l.pos.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// after reports whether anything may have been written after since.
func (l *lastWrite) after(since int64) bool { return l.pos.Load() > since }
