package push

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the push tables.
//
// push_rules holds user-defined rules, one list per (user, kind) ordered by
// priority (0 is the most important). push_rule_defaults holds a user's
// changes to server-default rules (NULL: unchanged). push_rules_stream is
// the stream position of each user's last rule change. push_unread lists
// the events that notified a user and are not read yet.
var Migrations = []storage.Migration{{
	Component: "push",
	Version:   1,
	SQL: `
CREATE TABLE push_rules (
	user_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	rule_id TEXT NOT NULL,
	priority BIGINT NOT NULL,
	enabled BOOLEAN NOT NULL,
	actions TEXT NOT NULL,
	conditions TEXT NOT NULL,
	pattern TEXT NOT NULL,
	PRIMARY KEY (user_id, kind, rule_id)
);
CREATE TABLE push_rule_defaults (
	user_id TEXT NOT NULL,
	rule_id TEXT NOT NULL,
	enabled BOOLEAN,
	actions TEXT,
	PRIMARY KEY (user_id, rule_id)
);
CREATE TABLE push_rules_stream (
	user_id TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
CREATE TABLE push_unread (
	user_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	pos BIGINT NOT NULL,
	thread_id TEXT NOT NULL,
	highlight BOOLEAN NOT NULL,
	PRIMARY KEY (user_id, room_id, pos)
);
`,
}}
