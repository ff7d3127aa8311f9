package analytics

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the package's tables: messages per room and hour (the
// hour as Unix seconds / 3600), messages per room, day and sender, reply
// delays per room and day in log2 bins of seconds, each room's last
// message (to measure the next reply) and the follower's mark.
var Migrations = []storage.Migration{{
	Component: "analytics",
	Version:   1,
	SQL: `
CREATE TABLE analytics_hours (
	room_id TEXT NOT NULL,
	hour BIGINT NOT NULL,
	messages BIGINT NOT NULL,
	PRIMARY KEY (room_id, hour)
);
CREATE INDEX analytics_hours_hour ON analytics_hours (hour);
CREATE TABLE analytics_senders (
	room_id TEXT NOT NULL,
	day BIGINT NOT NULL,
	sender TEXT NOT NULL,
	messages BIGINT NOT NULL,
	PRIMARY KEY (room_id, day, sender)
);
CREATE INDEX analytics_senders_day ON analytics_senders (day);
CREATE TABLE analytics_replies (
	room_id TEXT NOT NULL,
	day BIGINT NOT NULL,
	bin INTEGER NOT NULL,
	replies BIGINT NOT NULL,
	PRIMARY KEY (room_id, day, bin)
);
CREATE INDEX analytics_replies_day ON analytics_replies (day);
CREATE TABLE analytics_last (
	room_id TEXT PRIMARY KEY,
	sender TEXT NOT NULL,
	ts BIGINT NOT NULL
);
CREATE TABLE analytics_marks (
	follower TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
`,
}}
