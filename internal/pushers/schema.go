package pushers

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the pusher tables.
//
// pushers holds each user's pushers, keyed by (user, app_id, pushkey);
// data is the pusher's data object as JSON. push_notifications recorded
// the events that notified a user, one row per user, for /notifications
// (pos is the event's stream position; actions the matching rule's
// actions as JSON); since push schema version 3 an event's notifications
// are one push_events row of the push package, and this table is only
// read until the retention has emptied it.
var Migrations = []storage.Migration{{
	Component: "pushers",
	Version:   1,
	SQL: `
CREATE TABLE pushers (
	user_id TEXT NOT NULL,
	app_id TEXT NOT NULL,
	pushkey TEXT NOT NULL,
	kind TEXT NOT NULL,
	app_display_name TEXT NOT NULL,
	device_display_name TEXT NOT NULL,
	profile_tag TEXT NOT NULL,
	lang TEXT NOT NULL,
	data TEXT NOT NULL,
	device_id TEXT NOT NULL,
	pushkey_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);
CREATE TABLE push_notifications (
	user_id TEXT NOT NULL,
	pos BIGINT NOT NULL,
	room_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	actions TEXT NOT NULL,
	highlight BOOLEAN NOT NULL,
	ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, pos)
);
CREATE INDEX push_notifications_ts ON push_notifications (ts);
`,
}}
