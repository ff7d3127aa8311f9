package ledger

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the ledger's tables: the followers' mark per log, the
// rooms the events follower has seen turn the ledger on or off, where each
// logged event is in the log, and the keys the keys log holds last for
// each local user's device and cross-signing key.
var Migrations = []storage.Migration{{
	Component: "ledger",
	Version:   1,
	SQL: `
CREATE TABLE ledger_marks (
	log TEXT PRIMARY KEY,
	pos BIGINT NOT NULL,
	size BIGINT NOT NULL
);
CREATE TABLE ledger_rooms (
	room_id TEXT PRIMARY KEY,
	enabled BOOLEAN NOT NULL
);
CREATE TABLE ledger_entries (
	event_id TEXT PRIMARY KEY,
	log_index BIGINT NOT NULL,
	room_id TEXT NOT NULL
);
`,
}, {
	Component: "ledger",
	Version:   2,
	SQL: `
CREATE TABLE ledger_keys (
	user_id TEXT NOT NULL,
	key_id TEXT NOT NULL,
	public_keys TEXT NOT NULL,
	PRIMARY KEY (user_id, key_id)
);
`,
}}
