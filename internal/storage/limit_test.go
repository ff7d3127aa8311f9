package storage

import (
	"slices"
	"testing"
)

func TestInlineLimit(t *testing.T) {
	db := &DB{Dialect: SQLite}
	for _, tc := range []struct {
		q        string
		args     []any
		wantQ    string
		wantArgs []any
	}{
		{"SELECT a FROM t WHERE b = $1 LIMIT $2", []any{"x", 10}, "SELECT a FROM t WHERE b = $1 LIMIT 10", []any{"x"}},
		{"SELECT a FROM t WHERE b = $1 LIMIT $2 OFFSET $3", []any{"x", 10, int64(5)}, "SELECT a FROM t WHERE b = $1 LIMIT 10 OFFSET 5", []any{"x"}},
		{"SELECT a FROM t LIMIT $1", []any{"not a number"}, "SELECT a FROM t LIMIT $1", []any{"not a number"}},
		{"SELECT a FROM t WHERE b = $2 LIMIT $1", []any{3, "x"}, "SELECT a FROM t WHERE b = $2 LIMIT $1", []any{3, "x"}},
		{"SELECT a FROM t LIMIT 5", nil, "SELECT a FROM t LIMIT 5", nil},
	} {
		q, args := db.inlineLimit(tc.q, tc.args)
		if q != tc.wantQ || !slices.Equal(args, tc.wantArgs) {
			t.Errorf("inlineLimit(%q, %v) = %q, %v; want %q, %v", tc.q, tc.args, q, args, tc.wantQ, tc.wantArgs)
		}
	}
	pg := &DB{Dialect: Postgres}
	if q, _ := pg.inlineLimit("SELECT 1 LIMIT $1", []any{1}); q != "SELECT 1 LIMIT $1" {
		t.Errorf("PostgreSQL queries must be left alone: %q", q)
	}
}

func TestPlaceholders(t *testing.T) {
	for _, tc := range []struct {
		start, n int
		want     string
	}{{1, 0, ""}, {1, 1, "$1"}, {2, 3, "$2, $3, $4"}, {9, 2, "$9, $10"}} {
		if got := Placeholders(tc.start, tc.n); got != tc.want {
			t.Errorf("Placeholders(%d, %d) = %q, want %q", tc.start, tc.n, got, tc.want)
		}
	}
}
