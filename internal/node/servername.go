package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/matrixos/matrixos/internal/storage"
)

// nodeMigrations are the node's own tables: settings that belong to the
// database rather than to the config file.
var nodeMigrations = []storage.Migration{{
	Component: "node",
	Version:   1,
	SQL: `
CREATE TABLE node_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
`,
}}

// bindServerName ties the database to the configured server name. The
// name is part of every user ID, room alias and event sender stored, so
// once users exist another name would lock every one of them out: the
// node refuses to start instead. Without users the stored name follows
// the config. A database from before the name was stored is bound to the
// server of its users.
func bindServerName(ctx context.Context, db *storage.DB, serverName string) error {
	return db.Write(ctx, func(tx *storage.Tx) error {
		var stored string
		err := tx.QueryRow(ctx, `SELECT value FROM node_settings WHERE name = 'server_name'`).Scan(&stored)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read stored server name: %w", err)
		}
		if stored == serverName {
			return nil // the usual start: nothing to count or store
		}
		var users int64
		var someUser string
		if err := tx.QueryRow(ctx, `SELECT COUNT(*), COALESCE(MIN(user_id), '') FROM users`).Scan(&users, &someUser); err != nil {
			return fmt.Errorf("count users: %w", err)
		}
		if stored == "" && users > 0 {
			_, stored, _ = strings.Cut(someUser, ":")
		}
		if stored != "" && stored != serverName && users > 0 {
			return fmt.Errorf("server_name is %q, but this database belongs to %q: its %d users (such as %s) would all be locked out. "+
				"Set server_name back to %q, or start %q on a new data directory and database", serverName, stored, users, someUser, stored, serverName)
		}
		if stored == serverName {
			return nil // bound to its users' server just now
		}
		_, err = tx.Exec(ctx, `INSERT INTO node_settings (name, value) VALUES ('server_name', $1)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`, serverName)
		if err != nil {
			return fmt.Errorf("store server name: %w", err)
		}
		return nil
	})
}
