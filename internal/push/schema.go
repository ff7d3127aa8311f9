package push

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the push tables.
//
// push_rules holds user-defined rules, one list per (user, kind) ordered by
// priority (0 is the most important). push_rule_defaults holds a user's
// changes to server-default rules (NULL: unchanged). push_rules_stream is
// the stream position of each user's last rule change. push_unread lists
// the events that notified a user, and push_read_marks how far each user
// has read in each room: scope '*' for the whole room (an unthreaded
// receipt, or the user's own send in the main timeline), '-' where the
// user's membership last ended (apart, so that a refused kick can be
// undone), else one thread (empty: the main timeline). A row at or below its user's read position for
// its room and thread is read: it is garbage, deleted by position in
// batches (see collectGarbage), never counted.
//
// Version 2 keys push_unread by (user_id, pos) and keeps read positions
// instead of deleting rows on every read: an event's rows go to the end of
// each notified user's rows, in pages the batch's other events share,
// wherever their rooms; keyed by (user_id, room_id, pos) and deleted by
// room on each read, every event of another room wrote a page of its own
// for each member (sends spread over 50 rooms wrote 34 pages per event).
//
// Version 3 records an event's notifications as one push_events row
// instead of a push_unread row per notified user (and a push_notifications
// row per user for /notifications): the event, its thread, when it was
// recorded, and the users it notified with their actions (see
// insertRecord). A user has the event unread while their read mark is
// below it, so read rows are never deleted; rows older than the
// notification retention that no one has unread are (see Prune). The
// rows version 2 left in push_unread become such rows at the next start
// (see convertLegacyUnread), with the actions "notify", or "notify" with
// a highlight, since that was all they kept; push_unread stays, empty.
//
// Version 6 numbers the local users each room's events have notified,
// in the order of their first notification (push_room_users, see
// slots.go), and push_events rows name the users they notify by those
// numbers, as runs of numbers per action list (see encodeNotified): a
// send into a room of 2,000 members that notifies all of them alike
// writes a few bytes instead of every member's user ID. Rows written
// before keep the list of user IDs, which is still read.
//
// Version 7 keeps, for each deactivated user, the last position recorded
// when they were deactivated (push_gone_users): their read marks are
// deleted, and the counts rebuilt at start-up skip their notifications at
// or below it, which the rows still name (a reactivated account counts
// only what notified it after).
//
// Version 8 names in a push_events row the local sender whose read mark
// the event moves (reader): the row is written anyway when the event
// notifies someone, and the sender's mark is then not written to
// push_read_marks, one page less in the send's commit; the counts
// rebuilt at start-up move the mark as they read the row (see loadUnread).
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
}, {
	Component: "push",
	Version:   2,
	SQL: `
CREATE TABLE push_unread_by_pos (
	user_id TEXT NOT NULL,
	pos BIGINT NOT NULL,
	room_id TEXT NOT NULL,
	thread_id TEXT NOT NULL,
	highlight BOOLEAN NOT NULL,
	PRIMARY KEY (user_id, pos)
);
INSERT INTO push_unread_by_pos (user_id, pos, room_id, thread_id, highlight)
	SELECT user_id, pos, room_id, thread_id, highlight FROM push_unread;
DROP TABLE push_unread;
ALTER TABLE push_unread_by_pos RENAME TO push_unread;
CREATE TABLE push_read_marks (
	user_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	scope TEXT NOT NULL,
	pos BIGINT NOT NULL,
	PRIMARY KEY (user_id, room_id, scope)
);
`,
}, {
	Component: "push",
	Version:   3,
	SQL: `
CREATE TABLE push_events (
	pos BIGINT PRIMARY KEY,
	room_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	thread_id TEXT NOT NULL,
	ts BIGINT NOT NULL,
	actions TEXT NOT NULL,
	notified TEXT NOT NULL
);
CREATE INDEX push_events_room ON push_events (room_id, pos);
CREATE INDEX push_events_ts ON push_events (ts);
`,
}, {
	// push_events has no index besides its key: each was a page of its
	// own in every send's commit (push_events_room one per room sent
	// into). A purge finds the room's rows through the room's events
	// (rooms.Engine runs its OnPurge hooks before it deletes them) and
	// Prune walks the rows in stream order, which is the order they were
	// recorded in, up to the first one recorded after its cutoff.
	Component: "push",
	Version:   4,
	SQL: `
DROP INDEX push_events_room;
DROP INDEX push_events_ts;
`,
}, {
	// On SQLite a row's position is its key (INTEGER PRIMARY KEY), not a
	// column with a unique index of its own: one B-tree and one page less
	// in every send's commit. PostgreSQL keeps its BIGINT key.
	Component: "push",
	Version:   5,
	SQLite: `
CREATE TABLE push_events_by_pos (
	pos INTEGER PRIMARY KEY,
	room_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	thread_id TEXT NOT NULL,
	ts BIGINT NOT NULL,
	actions TEXT NOT NULL,
	notified TEXT NOT NULL
);
INSERT INTO push_events_by_pos (pos, room_id, event_id, thread_id, ts, actions, notified)
	SELECT pos, room_id, event_id, thread_id, ts, actions, notified FROM push_events ORDER BY pos;
DROP TABLE push_events;
ALTER TABLE push_events_by_pos RENAME TO push_events;
`,
}, {
	Component: "push",
	Version:   6,
	SQL: `
CREATE TABLE push_room_users (
	room_id TEXT NOT NULL,
	idx BIGINT NOT NULL,
	user_id TEXT NOT NULL,
	PRIMARY KEY (room_id, idx)
);
`,
}, {
	Component: "push",
	Version:   7,
	SQL: `
CREATE TABLE push_gone_users (
	user_id TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
`,
}, {
	Component: "push",
	Version:   8,
	SQL:       `ALTER TABLE push_events ADD COLUMN reader TEXT;`,
}}
