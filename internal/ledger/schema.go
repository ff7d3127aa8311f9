package ledger

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the ledger's tables: the follower's mark per log, the
// rooms it has seen turn the ledger on or off, and where each logged event
// is in the log.
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
}}
