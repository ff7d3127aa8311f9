package storage

import (
	"context"
	"fmt"
	"testing"
)

// TestStmtCacheKeepsHotStatements: queries with ever new texts (a varying
// number of placeholders) evict the least recently used statements, not
// the hot one, and do not stop new queries from being cached; a statement
// evicted while handed out stays usable until it is released.
func TestStmtCacheKeepsHotStatements(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, t.TempDir()+"/db", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const limit = 4
	c := newStmtCache(db.read, limit)
	defer c.close()
	use := func(q string) *cachedStmt {
		t.Helper()
		cs := c.get(ctx, q)
		if cs == nil {
			t.Fatalf("%s: not prepared", q)
		}
		c.release(cs)
		return cs
	}
	const hot = "SELECT 1"
	first := use(hot)
	held := c.get(ctx, "SELECT 2")
	for n := 1; n <= 50; n++ {
		q := "SELECT 0 IN (" + Placeholders(1, n) + ")"
		if cs := use(q); c.m[q] == nil || cs.evicted {
			t.Fatalf("%d placeholders: not cached", n)
		}
		if cs := use(hot); cs != first {
			t.Fatalf("after %d placeholders: the hot statement was evicted", n)
		}
		if got := c.lru.Len(); got > limit {
			t.Fatalf("%d statements cached, limit %d", got, limit)
		}
	}
	if !held.evicted {
		t.Fatal("the held statement was not evicted")
	}
	var x int
	if err := held.st.QueryRowContext(ctx).Scan(&x); err != nil || x != 2 {
		t.Fatalf("held statement after its eviction: %d, %v", x, err)
	}
	c.release(held)
	if err := held.st.QueryRowContext(ctx).Scan(&x); err == nil {
		t.Fatal("an evicted statement is still open after its release")
	}
	if err := db.QueryRow(ctx, hot).Scan(&x); err != nil || x != 1 {
		t.Fatalf("query through the DB: %d, %v", x, err)
	}
	args := make([]any, 50)
	for i := range args {
		args[i] = i
	}
	if err := db.QueryRow(ctx, fmt.Sprintf("SELECT 0 IN (%s)", Placeholders(1, 50)), args...).Scan(&x); err != nil || x != 1 {
		t.Fatalf("query through the DB: %d, %v", x, err)
	}
}
