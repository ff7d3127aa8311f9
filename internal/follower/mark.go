package follower

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// skipSaveEvery is how far a mark moved only past events that called for
// nothing may run ahead of the stored one before Skip stores it: a
// restart reads those events again and finds nothing to do.
const skipSaveEvery = 1000

// Mark is a follower's position in the stream: the events up to it are
// handled. It lives in a (follower TEXT PRIMARY KEY, pos BIGINT) table of
// the follower's package, read once and then kept in memory. Its methods
// are safe for concurrent use.
type Mark struct {
	db    *storage.DB
	table string
	name  string

	mu     sync.Mutex
	loaded bool
	pos    int64 // in memory: at or past saved
	saved  int64
}

// NewMark returns the mark stored as name's row of table.
func NewMark(db *storage.DB, table, name string) *Mark {
	return &Mark{db: db, table: table, name: name}
}

// Pos returns the mark, read from its table the first time.
func (m *Mark) Pos(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loaded {
		return m.pos, nil
	}
	var pos int64
	err := m.db.QueryRow(ctx, "SELECT pos FROM "+m.table+" WHERE follower = $1", m.name).Scan(&pos)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read the mark of %s: %w", m.table, err)
	}
	m.pos, m.saved, m.loaded = pos, pos, true
	return pos, nil
}

// SetTx stores pos in tx, the write of what the events up to pos called
// for; the mark moves when tx commits.
func (m *Mark) SetTx(ctx context.Context, tx *storage.Tx, pos int64) error {
	if _, err := tx.Exec(ctx, "INSERT INTO "+m.table+` (follower, pos) VALUES ($1, $2)
		ON CONFLICT (follower) DO UPDATE SET pos = excluded.pos`, m.name, pos); err != nil {
		return fmt.Errorf("store the mark of %s: %w", m.table, err)
	}
	tx.AfterCommit(func() { m.moved(pos, true) })
	return nil
}

// Set stores pos on its own.
func (m *Mark) Set(ctx context.Context, pos int64) error {
	return m.db.Write(ctx, func(tx *storage.Tx) error { return m.SetTx(ctx, tx, pos) })
}

// Skip moves the mark past events that called for nothing: in memory,
// and in the table once it is skipSaveEvery past the stored one, so that
// events no follower acts on cost no write each.
func (m *Mark) Skip(ctx context.Context, pos int64) error {
	m.mu.Lock()
	far := pos-m.saved >= skipSaveEvery
	m.mu.Unlock()
	if far {
		return m.Set(ctx, pos)
	}
	m.moved(pos, false)
	return nil
}

func (m *Mark) moved(pos int64, saved bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pos > m.pos || saved {
		m.pos = pos
	}
	if saved {
		m.saved = pos
	}
	m.loaded = true
}

// RoomSet is a set of rooms read from the follower's own tables, for an
// rooms.EventFilter's Rooms, kept until Forget. Its user serialises its
// calls of Get and Forget (the follower's steps); MayHave is safe for
// concurrent use.
type RoomSet struct {
	db    *storage.DB
	query string
	set   map[id.RoomID]bool
	// known is set as last read, for MayHave; nil while unread.
	known atomic.Pointer[map[id.RoomID]bool]
}

// MayHave reports whether room is in the set as last read, or true while
// the set is unread (before the first Get, after Forget). A follower's
// OnEvent hook uses it to wake the follower only for events that may
// concern it; the follower's rounds still read everything after its mark.
func (r *RoomSet) MayHave(room id.RoomID) bool {
	set := r.known.Load()
	return set == nil || (*set)[room]
}

// NewRoomSet returns the set of the room IDs query returns.
func NewRoomSet(db *storage.DB, query string) *RoomSet { return &RoomSet{db: db, query: query} }

// Get returns the set, read again after Forget.
func (r *RoomSet) Get(ctx context.Context) (map[id.RoomID]bool, error) {
	if r.set != nil {
		return r.set, nil
	}
	rows, err := r.db.Query(ctx, r.query)
	if err != nil {
		return nil, fmt.Errorf("read rooms: %w", err)
	}
	defer rows.Close()
	set := map[id.RoomID]bool{}
	for rows.Next() {
		var room id.RoomID
		if err := rows.Scan(&room); err != nil {
			return nil, fmt.Errorf("read rooms: %w", err)
		}
		set[room] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rooms: %w", err)
	}
	r.set = set
	r.known.Store(&set)
	return set, nil
}

// Forget has the next Get read the set again, after a change of the
// table it comes from.
func (r *RoomSet) Forget() {
	r.set = nil
	r.known.Store(nil)
}
