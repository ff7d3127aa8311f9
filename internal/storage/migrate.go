package storage

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Migration is one versioned schema change of a component (a package that
// owns tables). The SQL is written once for both engines: PostgreSQL-style
// placeholders, portable types (TEXT, BIGINT, BOOLEAN, INTEGER PRIMARY KEY),
// and statements separated by a semicolon at the end of a line.
type Migration struct {
	Component string
	Version   int
	SQL       string
	// SQLite and Postgres, when set, replace SQL on that engine. Keep them
	// for what has no portable form (full-text search indexes).
	SQLite   string
	Postgres string
}

func (m Migration) text(d Dialect) string {
	if d == SQLite && m.SQLite != "" {
		return m.SQLite
	}
	if d == Postgres && m.Postgres != "" {
		return m.Postgres
	}
	return m.SQL
}

// Migrate applies the migrations that have not run yet, each component's in
// version order, each in its own transaction. It must run before writes
// start, or from the component's own start-up.
func (db *DB) Migrate(ctx context.Context, migrations []Migration) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	ms := append([]Migration(nil), migrations...)
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].Component != ms[j].Component {
			return ms[i].Component < ms[j].Component
		}
		return ms[i].Version < ms[j].Version
	})
	for _, m := range ms {
		var n int
		if err := db.write.QueryRowContext(ctx, db.rewrite(`SELECT COUNT(*) FROM schema_migrations WHERE component = $1 AND version = $2`),
			m.Component, m.Version).Scan(&n); err != nil {
			return fmt.Errorf("check migration %s/%d: %w", m.Component, m.Version, err)
		}
		if n > 0 {
			continue
		}
		tx, err := db.write.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s/%d: %w", m.Component, m.Version, err)
		}
		for _, stmt := range splitStatements(m.text(db.Dialect)) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				tx.Rollback()
				return fmt.Errorf("migration %s/%d: %w\n%s", m.Component, m.Version, err, stmt)
			}
		}
		if _, err := tx.ExecContext(ctx, db.rewrite(`INSERT INTO schema_migrations (component, version) VALUES ($1, $2)`), m.Component, m.Version); err != nil {
			tx.Rollback()
			return fmt.Errorf("record migration %s/%d: %w", m.Component, m.Version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit migration %s/%d: %w", m.Component, m.Version, err)
		}
		db.log.Info("applied migration", "component", m.Component, "version", m.Version)
	}
	return nil
}

func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
