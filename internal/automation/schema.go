package automation

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the package's tables: the rules in force (from room
// state or the admin API), with the incoming webhook's ID and secret of
// a webhook rule and when a scheduled rule last ran, and the follower's
// mark.
var Migrations = []storage.Migration{{
	Component: "automation",
	Version:   1,
	SQL: `
CREATE TABLE automation_rules (
	room_id TEXT NOT NULL,
	source TEXT NOT NULL,
	name TEXT NOT NULL,
	author TEXT NOT NULL,
	rule TEXT NOT NULL,
	hook_id TEXT,
	hook_secret TEXT,
	last_run BIGINT NOT NULL,
	PRIMARY KEY (room_id, source, name)
);
CREATE UNIQUE INDEX automation_rules_hook ON automation_rules (hook_id);
CREATE TABLE automation_marks (
	follower TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
`,
}}
