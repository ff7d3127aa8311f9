package federation

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Migrations are the key cache and this node's old verify keys.
var Migrations = []storage.Migration{{
	Component: "federation",
	Version:   1,
	SQL: `
CREATE TABLE federation_server_keys (
	server_name TEXT NOT NULL,
	key_id TEXT NOT NULL,
	public_key TEXT NOT NULL,
	valid_until_ts BIGINT NOT NULL,
	expired_ts BIGINT NOT NULL,
	response TEXT NOT NULL,
	fetched_ts BIGINT NOT NULL,
	PRIMARY KEY (server_name, key_id)
);
CREATE TABLE federation_old_keys (
	key_id TEXT PRIMARY KEY,
	public_key TEXT NOT NULL,
	expired_ts BIGINT NOT NULL
);
`,
}}

// cachedKey is one row of the key cache: a verify key of a server, the
// times it is valid for, and the signed response it came in.
type cachedKey struct {
	Key          id.SigningKey
	ValidUntilTS int64 // of the response it came in
	ExpiredTS    int64 // 0 for a current key
	Response     string
}

// validAt reports whether the key may verify something signed at ts
// (milliseconds), by the rule of room versions 5 and later: a current key
// until its response's valid_until_ts, an old key until its expired_ts.
func (k cachedKey) validAt(ts int64) bool {
	if k.ExpiredTS != 0 {
		return ts < k.ExpiredTS
	}
	return ts <= k.ValidUntilTS
}

// keyStore is the persistent key cache.
type keyStore struct{ db *storage.DB }

// load returns the cached key, or ok false.
func (s keyStore) load(ctx context.Context, serverName string, keyID id.KeyID) (cachedKey, bool, error) {
	var k cachedKey
	err := s.db.QueryRow(ctx, `SELECT public_key, valid_until_ts, expired_ts, response FROM federation_server_keys WHERE server_name = $1 AND key_id = $2`,
		serverName, string(keyID)).Scan(&k.Key, &k.ValidUntilTS, &k.ExpiredTS, &k.Response)
	if errors.Is(err, sql.ErrNoRows) {
		return k, false, nil
	}
	if err != nil {
		return k, false, fmt.Errorf("load key %s of %s: %w", keyID, serverName, err)
	}
	return k, true, nil
}

// responses returns the distinct signed responses cached for a server and
// the latest valid_until_ts among them.
func (s keyStore) responses(ctx context.Context, serverName string) (map[string][]id.KeyID, int64, error) {
	rows, err := s.db.Query(ctx, `SELECT key_id, valid_until_ts, response FROM federation_server_keys WHERE server_name = $1`, serverName)
	if err != nil {
		return nil, 0, fmt.Errorf("load keys of %s: %w", serverName, err)
	}
	defer rows.Close()
	out := map[string][]id.KeyID{}
	var latest int64
	for rows.Next() {
		var keyID, resp string
		var validUntil int64
		if err := rows.Scan(&keyID, &validUntil, &resp); err != nil {
			return nil, 0, fmt.Errorf("load keys of %s: %w", serverName, err)
		}
		out[resp] = append(out[resp], id.KeyID(keyID))
		latest = max(latest, validUntil)
	}
	return out, latest, rows.Err()
}

// store records every key of a checked response. A key already known from
// a response valid for longer is kept.
func (s keyStore) store(ctx context.Context, r *keyResponse, now time.Time) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		put := func(keyID id.KeyID, key id.SigningKey, expired int64) error {
			_, err := tx.Exec(ctx, `INSERT INTO federation_server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, response, fetched_ts)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts,
	expired_ts = excluded.expired_ts, response = excluded.response, fetched_ts = excluded.fetched_ts
WHERE federation_server_keys.valid_until_ts <= excluded.valid_until_ts`,
				r.ServerName, string(keyID), string(key), r.ValidUntilTS.UnixMilli(), expired, string(r.Raw), now.UnixMilli())
			if err != nil {
				return fmt.Errorf("store key %s of %s: %w", keyID, r.ServerName, err)
			}
			return nil
		}
		for keyID, k := range r.VerifyKeys {
			if err := put(keyID, k.Key, 0); err != nil {
				return err
			}
		}
		for keyID, k := range r.OldVerifyKeys {
			if err := put(keyID, k.Key, max(k.ExpiredTS.UnixMilli(), 1)); err != nil {
				return err
			}
		}
		return nil
	})
}

// OldKey is a verify key this node no longer signs with.
type OldKey struct {
	ID        id.KeyID
	Key       id.SigningKey
	ExpiredTS int64
}

// RecordOldKey keeps a retired verify key of this node, served in
// old_verify_keys from now on (see matrixos key rotate).
func RecordOldKey(ctx context.Context, db *storage.DB, k OldKey) error {
	return db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO federation_old_keys (key_id, public_key, expired_ts) VALUES ($1, $2, $3)
ON CONFLICT (key_id) DO UPDATE SET public_key = excluded.public_key, expired_ts = excluded.expired_ts`,
			string(k.ID), string(k.Key), k.ExpiredTS)
		if err != nil {
			return fmt.Errorf("record old key %s: %w", k.ID, err)
		}
		return nil
	})
}

// OldKeys returns this node's retired verify keys.
func OldKeys(ctx context.Context, db *storage.DB) ([]OldKey, error) {
	rows, err := db.Query(ctx, `SELECT key_id, public_key, expired_ts FROM federation_old_keys ORDER BY expired_ts`)
	if err != nil {
		return nil, fmt.Errorf("load old keys: %w", err)
	}
	defer rows.Close()
	var out []OldKey
	for rows.Next() {
		var k OldKey
		if err := rows.Scan(&k.ID, &k.Key, &k.ExpiredTS); err != nil {
			return nil, fmt.Errorf("load old keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
