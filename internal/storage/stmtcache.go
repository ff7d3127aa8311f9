package storage

import (
	"container/list"
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds each statement cache. Queries built with a varying
// number of placeholders, or a LIMIT written into their text (see
// inlineLimit), can have more forms than that: the least recently used
// statements give way to new ones, so the hot ones stay.
const maxCachedStmts = 1024

// stmtCache keeps up to limit prepared statements by query text (in
// PostgreSQL's style, prepared in SQLite's), the least recently used
// closed first. SQLite spends a large share of its time
// parsing SQL, so every query in use is prepared once per pool.
// PostgreSQL's driver caches prepared statements by itself.
type stmtCache struct {
	db    *sql.DB
	limit int

	mu  sync.Mutex
	m   map[string]*list.Element // of *cachedStmt
	lru list.List                // most recently used first
}

// cachedStmt is a statement in a stmtCache. A statement handed out by get
// is closed only after its release, so that an eviction cannot close it
// between get and its use.
type cachedStmt struct {
	q       string
	st      *sql.Stmt
	users   int  // gets not yet released
	evicted bool // no longer in the cache: close at the last release
}

func newStmtCache(db *sql.DB, limit int) *stmtCache {
	return &stmtCache{db: db, limit: limit, m: map[string]*list.Element{}}
}

// get returns q's prepared statement, preparing it if the cache does not
// have it, or nil when q cannot be prepared (the caller runs it
// unprepared and reports the error). The caller passes what it returns to
// release once it has started its query with it: a running query keeps
// its statement usable by itself.
func (c *stmtCache) get(ctx context.Context, q string) *cachedStmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	if e, ok := c.m[q]; ok {
		c.lru.MoveToFront(e)
		cs := e.Value.(*cachedStmt)
		cs.users++
		c.mu.Unlock()
		return cs
	}
	c.mu.Unlock()
	st, err := c.db.PrepareContext(ctx, sqliteText(q))
	if err != nil {
		return nil
	}
	c.mu.Lock()
	if e, ok := c.m[q]; ok { // prepared meanwhile by another caller
		c.lru.MoveToFront(e)
		cs := e.Value.(*cachedStmt)
		cs.users++
		c.mu.Unlock()
		st.Close()
		return cs
	}
	cs := &cachedStmt{q: q, st: st, users: 1}
	c.m[q] = c.lru.PushFront(cs)
	var unused []*sql.Stmt
	for c.lru.Len() > c.limit {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.m, old.q)
		old.evicted = true
		if old.users == 0 {
			unused = append(unused, old.st)
		}
	}
	c.mu.Unlock()
	for _, st := range unused {
		st.Close()
	}
	return cs
}

// release ends a use of a statement that get returned.
func (c *stmtCache) release(cs *cachedStmt) {
	c.mu.Lock()
	cs.users--
	done := cs.evicted && cs.users == 0
	c.mu.Unlock()
	if done {
		cs.st.Close()
	}
}

// close closes the cached statements.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; e = e.Next() {
		e.Value.(*cachedStmt).st.Close()
	}
	clear(c.m)
	c.lru.Init()
}
