package moderation

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the package's tables: the follower's mark, the rooms it
// watches (protected rooms, policy lists, moderators' rooms), the log of
// its actions (with what undoing one needs) and the node's settings and
// classifier.
var Migrations = []storage.Migration{{
	Component: "moderation",
	Version:   1,
	SQL: `
CREATE TABLE moderation_marks (
	follower TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
CREATE TABLE moderation_watch (
	room_id TEXT NOT NULL,
	role TEXT NOT NULL,
	PRIMARY KEY (room_id, role)
);
CREATE TABLE moderation_actions (
	id BIGINT PRIMARY KEY,
	ts BIGINT NOT NULL,
	room_id TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	event_id TEXT NOT NULL,
	reason TEXT NOT NULL,
	rule TEXT NOT NULL,
	detail TEXT NOT NULL,
	report_event TEXT NOT NULL,
	undone BOOLEAN NOT NULL
);
CREATE INDEX moderation_actions_report ON moderation_actions (report_event);
CREATE TABLE moderation_settings (
	name TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
}}
