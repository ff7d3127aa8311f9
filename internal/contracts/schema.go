package contracts

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the package's tables: the uploaded modules (base64), the
// attachments the follower has seen, each contract's state (values in
// base64) and the follower's mark.
var Migrations = []storage.Migration{{
	Component: "contracts",
	Version:   1,
	SQL: `
CREATE TABLE contract_modules (
	hash TEXT PRIMARY KEY,
	wasm TEXT NOT NULL,
	uploaded_by TEXT NOT NULL,
	uploaded_ts BIGINT NOT NULL
);
CREATE TABLE contract_attachments (
	room_id TEXT NOT NULL,
	name TEXT NOT NULL,
	module TEXT NOT NULL,
	events TEXT NOT NULL,
	config TEXT NOT NULL,
	PRIMARY KEY (room_id, name)
);
CREATE TABLE contract_state (
	room_id TEXT NOT NULL,
	name TEXT NOT NULL,
	module TEXT NOT NULL,
	entry_key TEXT NOT NULL,
	entry_value TEXT NOT NULL,
	PRIMARY KEY (room_id, name, module, entry_key)
);
CREATE TABLE contract_marks (
	follower TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
`,
}}
