package oauth

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the oauth tables: registered clients (with when each
// last started a session), and the device each OAuth session is, with
// its client.
var Migrations = []storage.Migration{{
	Component: "oauth",
	Version:   1,
	SQL: `
CREATE TABLE oauth_clients (
	client_id TEXT PRIMARY KEY,
	metadata TEXT NOT NULL,
	created_ts BIGINT NOT NULL
);
CREATE TABLE oauth_sessions (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	client_id TEXT NOT NULL,
	scope TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id)
);
`,
}, {
	Component: "oauth",
	Version:   2,
	// last_used_ts: when the client last started a session (0: never),
	// so that registrations nobody uses can be pruned (see pruneClients).
	// The clients registered before count as used at the upgrade: when
	// they were last used is not known.
	SQLite: `ALTER TABLE oauth_clients ADD COLUMN last_used_ts BIGINT NOT NULL DEFAULT 0;
UPDATE oauth_clients SET last_used_ts = CAST(strftime('%s', 'now') AS INTEGER);`,
	Postgres: `ALTER TABLE oauth_clients ADD COLUMN last_used_ts BIGINT NOT NULL DEFAULT 0;
UPDATE oauth_clients SET last_used_ts = EXTRACT(EPOCH FROM now())::BIGINT;`,
}}
