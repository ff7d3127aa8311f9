package ephemeral

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the receipt and presence tables. A receipt's thread_id is
// empty for unthreaded receipts; event_pos is the stream position of the
// acknowledged event, so receipts never move backwards (0 for an event not
// known here, which a remote receipt may name).
var Migrations = []storage.Migration{{
	Component: "ephemeral",
	Version:   1,
	SQL: `
CREATE TABLE receipts (
	room_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	receipt_type TEXT NOT NULL,
	thread_id TEXT NOT NULL,
	event_id TEXT NOT NULL,
	event_pos BIGINT NOT NULL,
	ts BIGINT NOT NULL,
	pos BIGINT NOT NULL,
	PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_pos ON receipts (pos);
CREATE INDEX receipts_room_pos ON receipts (room_id, pos);
CREATE TABLE presence (
	user_id TEXT PRIMARY KEY,
	presence TEXT NOT NULL,
	status_msg TEXT NOT NULL,
	last_active_ts BIGINT NOT NULL,
	pos BIGINT NOT NULL
);
CREATE INDEX presence_pos ON presence (pos);
`,
}}
