package oauth

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the oauth tables: registered clients, and the device
// each OAuth session is, with its client.
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
}}
