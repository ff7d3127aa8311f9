package admin

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the admin tables. reports holds event, room and user
// reports (kind); blocked_rooms the rooms nobody may join;
// server_notice_rooms each user's server notices room.
var Migrations = []storage.Migration{{
	Component: "admin",
	Version:   1,
	SQL: `
CREATE TABLE reports (
	id BIGINT PRIMARY KEY,
	kind TEXT NOT NULL,
	received_ts BIGINT NOT NULL,
	reporter TEXT NOT NULL,
	room_id TEXT NOT NULL DEFAULT '',
	event_id TEXT NOT NULL DEFAULT '',
	target_user TEXT NOT NULL DEFAULT '',
	reason TEXT NOT NULL DEFAULT '',
	score BIGINT
);
CREATE INDEX reports_kind ON reports (kind, id);
CREATE TABLE blocked_rooms (
	room_id TEXT PRIMARY KEY,
	blocked_by TEXT NOT NULL,
	blocked_ts BIGINT NOT NULL
);
CREATE TABLE server_notice_rooms (
	user_id TEXT PRIMARY KEY,
	room_id TEXT NOT NULL
);
`,
}}
