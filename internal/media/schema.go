package media

import "github.com/matrixos/matrixos/internal/storage"

// Migrations are the media tables.
//
// media has one row per media ID. A row created by POST /media/v1/create
// and not uploaded yet has sha256 ” and expires at expires_ts; an
// uploaded row has expires_ts 0. quarantined_by names the admin who
// quarantined it. Rows with the same sha256 share one
// stored file. media_thumbnails lists the thumbnails made of a media item,
// stored the same way. url_previews caches preview_url answers.
var Migrations = []storage.Migration{{
	Component: "media",
	Version:   1,
	SQL: `
CREATE TABLE media (
	server TEXT NOT NULL,
	media_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	content_type TEXT NOT NULL,
	filename TEXT NOT NULL,
	size BIGINT NOT NULL,
	sha256 TEXT NOT NULL,
	created_ts BIGINT NOT NULL,
	expires_ts BIGINT NOT NULL,
	quarantined BOOLEAN NOT NULL,
	quarantined_by TEXT NOT NULL,
	PRIMARY KEY (server, media_id)
);
CREATE INDEX media_user ON media (user_id, created_ts);
CREATE INDEX media_sha256 ON media (sha256);
CREATE TABLE media_thumbnails (
	server TEXT NOT NULL,
	media_id TEXT NOT NULL,
	width BIGINT NOT NULL,
	height BIGINT NOT NULL,
	method TEXT NOT NULL,
	content_type TEXT NOT NULL,
	size BIGINT NOT NULL,
	sha256 TEXT NOT NULL,
	PRIMARY KEY (server, media_id, width, height, method)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);
CREATE TABLE url_previews (
	url TEXT PRIMARY KEY,
	fetched_ts BIGINT NOT NULL,
	body TEXT NOT NULL
);
`,
}}
