package rooms

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the rooms tables.
var Migrations = []storage.Migration{{
	Component: "rooms",
	Version:   1,
	SQL: `
CREATE TABLE rooms (
	room_id TEXT PRIMARY KEY,
	version TEXT NOT NULL,
	creator TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	published BOOLEAN NOT NULL DEFAULT FALSE,
	snapshot BIGINT NOT NULL DEFAULT 0,
	depth BIGINT NOT NULL DEFAULT 0,
	extremities TEXT NOT NULL DEFAULT '[]',
	last_pos BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE events (
	pos BIGINT PRIMARY KEY,
	event_id TEXT NOT NULL UNIQUE,
	room_id TEXT NOT NULL,
	type TEXT NOT NULL,
	state_key TEXT,
	sender TEXT NOT NULL,
	depth BIGINT NOT NULL,
	origin_ts BIGINT NOT NULL,
	json TEXT NOT NULL,
	snapshot_before BIGINT NOT NULL,
	rejected BOOLEAN NOT NULL DEFAULT FALSE,
	redacted_by TEXT,
	txn_id TEXT,
	device_id TEXT,
	rel_type TEXT,
	relates_to TEXT,
	thread_id TEXT
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_relates ON events (relates_to, rel_type);
CREATE INDEX events_room_thread ON events (room_id, thread_id, pos);
CREATE INDEX events_room_ts ON events (room_id, origin_ts);
CREATE TABLE state_snapshots (
	snapshot_id BIGINT PRIMARY KEY,
	room_id TEXT NOT NULL,
	parent_id BIGINT NOT NULL,
	chain_len INTEGER NOT NULL
);
CREATE TABLE state_snapshot_entries (
	snapshot_id BIGINT NOT NULL,
	type TEXT NOT NULL,
	state_key TEXT NOT NULL,
	event_id TEXT NOT NULL,
	PRIMARY KEY (snapshot_id, type, state_key)
);
CREATE TABLE memberships (
	room_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	membership TEXT NOT NULL,
	event_id TEXT NOT NULL,
	pos BIGINT NOT NULL,
	forgotten BOOLEAN NOT NULL DEFAULT FALSE,
	PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
CREATE TABLE transactions (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE TABLE room_aliases (
	alias TEXT PRIMARY KEY,
	room_id TEXT NOT NULL,
	creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
`,
}, {
	Component: "rooms",
	Version:   2,
	SQL: `
CREATE INDEX events_relates_pos ON events (relates_to, pos);
CREATE INDEX rooms_published ON rooms (published);
`,
}, {
	// History visibility checks read a room's history_visibility changes
	// and one user's membership changes, and state at a position reads the
	// room's last state snapshot before it: both are index lookups, not
	// scans of the room's history.
	Component: "rooms",
	Version:   3,
	SQL: `
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos);
CREATE INDEX state_snapshots_room ON state_snapshots (room_id, snapshot_id);
`,
}, {
	// A transaction ID is scoped to the request path too (the room and
	// event type, or the redacted event), not only to the device. The
	// /send transactions already stored keep their scope; the /redact ones
	// (stored as "redact:<txn>") are dropped.
	Component: "rooms",
	Version:   4,
	SQL: `
CREATE TABLE room_transactions (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	scope TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, scope, txn_id)
);
INSERT INTO room_transactions (user_id, device_id, scope, txn_id, event_id, created_ts)
	SELECT t.user_id, t.device_id, e.room_id || '/send/' || e.type, t.txn_id, t.event_id, t.created_ts
	FROM transactions t JOIN events e ON e.event_id = t.event_id
	WHERE e.type <> 'm.room.redaction';
DROP TABLE transactions;
ALTER TABLE room_transactions RENAME TO transactions;
`,
}, {
	// Events that are not part of the accepted timeline live beside it, so
	// that every reader of events (sync, messages, search, relations) keeps
	// reading the timeline without a filter: outliers (known without their
	// state: the state and auth chain of a room joined over federation),
	// rejected events (kept so that they are not fetched again; never state,
	// never served, never auth events) and soft-failed events (accepted by
	// their own state, refused by the current state: never sent to clients,
	// never prev_events). A state snapshot that is not the room's current
	// state at its position (the state before or after an event on a fork)
	// is marked fork, so that "the room's state as of a position" stays one
	// descent of an index.
	Component: "rooms",
	Version:   5,
	SQL: `
CREATE TABLE outlier_events (
	event_id TEXT PRIMARY KEY,
	room_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	type TEXT NOT NULL,
	state_key TEXT,
	sender TEXT NOT NULL,
	depth BIGINT NOT NULL,
	origin_ts BIGINT NOT NULL,
	json TEXT NOT NULL,
	snapshot_before BIGINT NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '',
	received_ts BIGINT NOT NULL
);
CREATE INDEX outlier_events_room ON outlier_events (room_id, kind);
ALTER TABLE state_snapshots ADD COLUMN fork BOOLEAN NOT NULL DEFAULT FALSE;
DROP INDEX state_snapshots_room;
CREATE INDEX state_snapshots_room ON state_snapshots (room_id, fork, snapshot_id);
`,
}, {
	// A redaction that arrives before its target (over federation, events
	// come in any order) is remembered, and applied when the target
	// arrives. An invite to a room this node is not in keeps the stripped
	// state the inviting server sent, which /sync shows with it.
	Component: "rooms",
	Version:   6,
	SQL: `
CREATE TABLE pending_redactions (
	target_id TEXT NOT NULL,
	redaction_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	PRIMARY KEY (target_id, redaction_id)
);
CREATE INDEX pending_redactions_room ON pending_redactions (room_id);
CREATE TABLE invite_state (
	event_id TEXT PRIMARY KEY,
	room_id TEXT NOT NULL,
	state TEXT NOT NULL
);
CREATE INDEX invite_state_room ON invite_state (room_id);
`,
}, {
	// History fetched from other servers (/backfill) is stored in the
	// timeline at negative positions, so /sync, which only moves forward,
	// never sends it as new; /messages and /context page in topological
	// order, (depth, position), which this index serves. gap marks an event
	// accepted while history before it was missing (its prev_events were
	// not all known): /sync starts a limited timeline there, and /messages
	// backfills before it.
	Component: "rooms",
	Version:   7,
	SQL: `
ALTER TABLE events ADD COLUMN gap BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX events_room_topo ON events (room_id, depth, pos);
`,
}, {
	// A pending redaction whose target never arrives is forgotten after
	// PendingRedactionLifetime: received_ts is when it was remembered (0
	// for rows from before this version, which the next sweep dates).
	Component: "rooms",
	Version:   8,
	SQL: `
ALTER TABLE pending_redactions ADD COLUMN received_ts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX pending_redactions_received ON pending_redactions (received_ts);
`,
}, {
	// A remote event refused only because some of its auth events are not
	// known here waits for them: one row per missing auth event, with the
	// event as received and who sent it, so that it is checked again when
	// one arrives (see awaiting.go).
	Component: "rooms",
	Version:   9,
	SQL: `
CREATE TABLE awaiting_auth (
	missing_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	room_id TEXT NOT NULL,
	origin TEXT NOT NULL,
	json TEXT NOT NULL,
	received_ts BIGINT NOT NULL,
	PRIMARY KEY (missing_id, event_id)
);
CREATE INDEX awaiting_auth_room ON awaiting_auth (room_id, event_id);
CREATE INDEX awaiting_auth_received ON awaiting_auth (received_ts);
`,
}, {
	// Only events with a relation or in a thread are in the relation and
	// thread indexes: a plain message, most of a timeline, no longer
	// adds three entries (and the pages they dirty) to each send's
	// commit. Every query of those indexes names relates_to or thread_id
	// with a comparison, which implies IS NOT NULL to both databases'
	// planners.
	Component: "rooms",
	Version:   10,
	SQL: `
DROP INDEX events_relates;
DROP INDEX events_relates_pos;
DROP INDEX events_room_thread;
CREATE INDEX events_relates ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;
CREATE INDEX events_relates_pos ON events (relates_to, pos) WHERE relates_to IS NOT NULL;
CREATE INDEX events_room_thread ON events (room_id, thread_id, pos) WHERE thread_id IS NOT NULL;
`,
}, {
	// A room joined with partial state (send_join's members_omitted) is
	// marked until the resync has fetched its full state: the join and
	// the servers to ask (partial.go).
	Component: "rooms",
	Version:   11,
	SQL: `
CREATE TABLE partial_state_rooms (
	room_id TEXT PRIMARY KEY,
	join_event_id TEXT NOT NULL,
	servers TEXT NOT NULL
);
`,
}, {
	// The stream position at which a partial-state room's state became
	// complete here, so that /sync shows the room to clients that did
	// not lazy-load members as newly joined from then on (partial.go).
	Component: "rooms",
	Version:   12,
	SQL: `
CREATE TABLE partial_state_completed (
	room_id TEXT PRIMARY KEY,
	pos BIGINT NOT NULL
);
`,
}, {
	// Only state events are in the state index: a message, most of a
	// timeline, no longer adds an entry to it, which with sends into
	// many rooms was a page of its own in the commit for each room's
	// messages. Its queries (visibilityQuery) compare state_key with a
	// value, which implies IS NOT NULL to both databases' planners.
	Component: "rooms",
	Version:   13,
	SQL: `
DROP INDEX events_room_state;
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;
`,
}, {
	// On SQLite an event's position is its row's key (INTEGER PRIMARY
	// KEY): declared BIGINT, it was a column of its own with a unique
	// index beside the table's hidden row number, one more B-tree written
	// for each event and one more page in each send's commit. The table
	// is copied once in position order. PostgreSQL keeps its BIGINT key.
	Component: "rooms",
	Version:   14,
	SQLite: `
CREATE TABLE events_by_pos (
	pos INTEGER PRIMARY KEY,
	event_id TEXT NOT NULL UNIQUE,
	room_id TEXT NOT NULL,
	type TEXT NOT NULL,
	state_key TEXT,
	sender TEXT NOT NULL,
	depth BIGINT NOT NULL,
	origin_ts BIGINT NOT NULL,
	json TEXT NOT NULL,
	snapshot_before BIGINT NOT NULL,
	rejected BOOLEAN NOT NULL DEFAULT FALSE,
	redacted_by TEXT,
	txn_id TEXT,
	device_id TEXT,
	rel_type TEXT,
	relates_to TEXT,
	thread_id TEXT,
	gap BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO events_by_pos (pos, event_id, room_id, type, state_key, sender, depth, origin_ts, json, snapshot_before,
	rejected, redacted_by, txn_id, device_id, rel_type, relates_to, thread_id, gap)
	SELECT pos, event_id, room_id, type, state_key, sender, depth, origin_ts, json, snapshot_before,
	rejected, redacted_by, txn_id, device_id, rel_type, relates_to, thread_id, gap FROM events ORDER BY pos;
DROP TABLE events;
ALTER TABLE events_by_pos RENAME TO events;
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_room_ts ON events (room_id, origin_ts);
CREATE INDEX events_room_topo ON events (room_id, depth, pos);
CREATE INDEX events_relates ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;
CREATE INDEX events_relates_pos ON events (relates_to, pos) WHERE relates_to IS NOT NULL;
CREATE INDEX events_room_thread ON events (room_id, thread_id, pos) WHERE thread_id IS NOT NULL;
CREATE INDEX events_room_state ON events (room_id, type, state_key, pos) WHERE state_key IS NOT NULL;
`,
}, {
	// auth_edges is the persistent auth-chain index: the auth_events of
	// every stored event (timeline and outliers), space-separated, keyed by
	// room so that a room's whole auth DAG is one range scan. The room's
	// auth graph (stateres.AuthGraph) starts from it instead of loading
	// and parsing every event of the auth chains. Rooms stored before it
	// fill in lazily: what a resolution still had to load is added after
	// it (authedges.go). On SQLite the table is its primary key (WITHOUT
	// ROWID): one B-tree written per event, the room's rows together.
	Component: "rooms",
	Version:   15,
	SQL: `
CREATE TABLE auth_edges (
	room_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	auth_events TEXT NOT NULL,
	PRIMARY KEY (room_id, event_id)
);
`,
	SQLite: `
CREATE TABLE auth_edges (
	room_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	auth_events TEXT NOT NULL,
	PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
`,
}, {
	// A redaction applied while its room's state is partial keeps its
	// target's JSON as it was, so that the target is restored if the full
	// state refuses the redaction; the rows go when the resync completes
	// (partial.go).
	Component: "rooms",
	Version:   16,
	SQL: `
CREATE TABLE partial_redacted (
	event_id TEXT PRIMARY KEY,
	room_id TEXT NOT NULL,
	original_json TEXT NOT NULL
);
CREATE INDEX partial_redacted_room ON partial_redacted (room_id);
`,
}}
