package keys

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the keys tables.
var Migrations = []storage.Migration{{
	Component: "keys",
	Version:   1,
	SQL: `
CREATE TABLE e2e_device_keys (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	key_json TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id)
);
CREATE TABLE e2e_one_time_keys (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	key_id TEXT NOT NULL,
	key_json TEXT NOT NULL,
	seq BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_order ON e2e_one_time_keys (user_id, device_id, algorithm, seq);
CREATE TABLE e2e_fallback_keys (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	algorithm TEXT NOT NULL,
	key_id TEXT NOT NULL,
	key_json TEXT NOT NULL,
	used BOOLEAN NOT NULL DEFAULT FALSE,
	PRIMARY KEY (user_id, device_id, algorithm)
);
CREATE TABLE e2e_cross_signing_keys (
	user_id TEXT NOT NULL,
	key_type TEXT NOT NULL,
	public_key TEXT NOT NULL,
	key_json TEXT NOT NULL,
	PRIMARY KEY (user_id, key_type)
);
CREATE TABLE e2e_signatures (
	target_user TEXT NOT NULL,
	target_key TEXT NOT NULL,
	signer_user TEXT NOT NULL,
	signer_key_id TEXT NOT NULL,
	signature TEXT NOT NULL,
	PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
);
CREATE INDEX e2e_signatures_signer ON e2e_signatures (signer_user, signer_key_id);
CREATE TABLE e2e_device_changes (
	pos BIGINT NOT NULL,
	user_id TEXT NOT NULL,
	viewer TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (pos, user_id, viewer)
);
CREATE INDEX e2e_device_changes_user ON e2e_device_changes (user_id, pos);
CREATE TABLE to_device_messages (
	pos BIGINT PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	sender TEXT NOT NULL,
	type TEXT NOT NULL,
	content TEXT NOT NULL
);
CREATE INDEX to_device_messages_device ON to_device_messages (user_id, device_id, pos);
CREATE TABLE to_device_deliveries (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	token_pos BIGINT NOT NULL,
	upto_pos BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, token_pos)
);
CREATE TABLE to_device_txns (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE TABLE key_backup_versions (
	user_id TEXT NOT NULL,
	version BIGINT NOT NULL,
	algorithm TEXT NOT NULL,
	auth_data TEXT NOT NULL,
	etag BIGINT NOT NULL DEFAULT 0,
	deleted BOOLEAN NOT NULL DEFAULT FALSE,
	PRIMARY KEY (user_id, version)
);
CREATE TABLE key_backup_keys (
	user_id TEXT NOT NULL,
	version BIGINT NOT NULL,
	room_id TEXT NOT NULL,
	session_id TEXT NOT NULL,
	first_message_index BIGINT NOT NULL,
	forwarded_count BIGINT NOT NULL,
	is_verified BOOLEAN NOT NULL,
	session_data TEXT NOT NULL,
	PRIMARY KEY (user_id, version, room_id, session_id)
);
`,
}, {
	// A to-device transaction ID is scoped to the request path too (the
	// event type), not only to the device. The transactions stored before
	// keep that of the path they came with, which was not recorded: they
	// are dropped (they only guard retries of the last few minutes).
	Component: "keys",
	Version:   2,
	SQL: `
DROP TABLE to_device_txns;
CREATE TABLE to_device_txns (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	type TEXT NOT NULL,
	txn_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	PRIMARY KEY (user_id, device_id, type, txn_id)
);
`,
}, {
	// Federation: the stream ID of each local user's last device-list
	// update (m.device_list_update, GET /user/devices); the device lists
	// of remote users sharing a room with a local user; the message IDs
	// of received m.direct_to_device EDUs, to drop retries.
	Component: "keys",
	Version:   3,
	SQL: `
CREATE TABLE e2e_device_list_streams (
	user_id TEXT PRIMARY KEY,
	stream_id BIGINT NOT NULL
);
CREATE TABLE e2e_remote_device_lists (
	user_id TEXT PRIMARY KEY,
	stream_id BIGINT NOT NULL,
	stale BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE e2e_remote_device_keys (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	key_json TEXT NOT NULL,
	PRIMARY KEY (user_id, device_id)
);
CREATE TABLE e2e_remote_cross_signing_keys (
	user_id TEXT NOT NULL,
	key_type TEXT NOT NULL,
	key_json TEXT NOT NULL,
	PRIMARY KEY (user_id, key_type)
);
CREATE TABLE to_device_inbound (
	origin TEXT NOT NULL,
	message_id TEXT NOT NULL,
	received_ts BIGINT NOT NULL,
	PRIMARY KEY (origin, message_id)
);
CREATE INDEX to_device_inbound_age ON to_device_inbound (origin, received_ts);
`,
}, {
	// The device-list updates announced while a room's state was
	// partial and the servers each went to, until the full state's
	// catch-up has sent them to the servers that missed them
	// (partialstate.go); servers is a JSON array.
	Component: "keys",
	Version:   4,
	SQL: `
CREATE TABLE e2e_partial_sent (
	room_id TEXT NOT NULL,
	stream_id BIGINT NOT NULL,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	prev_id BIGINT NOT NULL,
	servers TEXT NOT NULL,
	PRIMARY KEY (room_id, stream_id)
);
`,
}}
