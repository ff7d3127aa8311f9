package accounts

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the accounts tables.
var Migrations = []storage.Migration{{
	Component: "accounts",
	Version:   1,
	SQL: `
CREATE TABLE users (
	user_id TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL DEFAULT '',
	is_admin BOOLEAN NOT NULL DEFAULT FALSE,
	deactivated BOOLEAN NOT NULL DEFAULT FALSE,
	locked BOOLEAN NOT NULL DEFAULT FALSE,
	suspended BOOLEAN NOT NULL DEFAULT FALSE,
	shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
	is_guest BOOLEAN NOT NULL DEFAULT FALSE,
	appservice_id TEXT NOT NULL DEFAULT '',
	created_ts BIGINT NOT NULL
);
CREATE TABLE profiles (
	user_id TEXT NOT NULL,
	field TEXT NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (user_id, field)
);
CREATE TABLE devices (
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	display_name TEXT,
	created_ts BIGINT NOT NULL,
	last_seen_ts BIGINT NOT NULL DEFAULT 0,
	last_seen_ip TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (user_id, device_id)
);
CREATE TABLE access_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	expires_ts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
CREATE TABLE refresh_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	created_ts BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);
CREATE TABLE login_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	expires_ts BIGINT NOT NULL
);
CREATE TABLE registration_tokens (
	token TEXT PRIMARY KEY,
	uses_allowed BIGINT,
	pending BIGINT NOT NULL DEFAULT 0,
	completed BIGINT NOT NULL DEFAULT 0,
	expiry_ts BIGINT
);
`,
}, {
	// The refresh tokens RotateRefreshToken exchanged, so that a second
	// use of one, the sign of a stolen token, ends its session.
	Component: "accounts",
	Version:   2,
	SQL: `
CREATE TABLE spent_refresh_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	spent_ts BIGINT NOT NULL
);
CREATE INDEX spent_refresh_tokens_device ON spent_refresh_tokens (user_id, device_id);
CREATE INDEX spent_refresh_tokens_ts ON spent_refresh_tokens (spent_ts);
`,
}}
