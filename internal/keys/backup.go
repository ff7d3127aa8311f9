package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// backupVersion is a stored key backup version.
type backupVersion struct {
	Version   int64
	Algorithm string
	AuthData  string
	Etag      int64
	Deleted   bool
}

var errUnknownVersion = mxhttp.NotFound("unknown backup version")

// loadVersion loads one backup version; ok is false if it never existed.
func (s *Service) loadVersion(ctx context.Context, q interface {
	QueryRow(ctx context.Context, q string, args ...any) *sql.Row
}, user id.UserID, version int64) (*backupVersion, bool, error) {
	v := &backupVersion{Version: version}
	err := q.QueryRow(ctx, "SELECT algorithm, auth_data, etag, deleted FROM key_backup_versions WHERE user_id = $1 AND version = $2", user, version).
		Scan(&v.Algorithm, &v.AuthData, &v.Etag, &v.Deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load backup version: %w", err)
	}
	return v, true, nil
}

// liveVersion loads a backup version that exists and is not deleted, or
// answers errUnknownVersion.
func (s *Service) liveVersion(ctx context.Context, q interface {
	QueryRow(ctx context.Context, q string, args ...any) *sql.Row
}, user id.UserID, version int64) (*backupVersion, error) {
	v, ok, err := s.loadVersion(ctx, q, user, version)
	if err != nil {
		return nil, err
	}
	if !ok || v.Deleted {
		return nil, errUnknownVersion
	}
	return v, nil
}

// currentVersion returns the user's latest backup version (0 if none).
func currentVersion(ctx context.Context, q interface {
	QueryRow(ctx context.Context, q string, args ...any) *sql.Row
}, user id.UserID) (int64, error) {
	var v sql.NullInt64
	if err := q.QueryRow(ctx, "SELECT MAX(version) FROM key_backup_versions WHERE user_id = $1 AND deleted = FALSE", user).Scan(&v); err != nil {
		return 0, fmt.Errorf("current backup version: %w", err)
	}
	return v.Int64, nil
}

// parseVersion reads a version string; ok is false if it cannot name one.
func parseVersion(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

type backupInfoBody struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func (b *backupInfoBody) check() error {
	if b.Algorithm == "" {
		return mxhttp.MissingParam("missing algorithm")
	}
	a := bytes.TrimSpace(b.AuthData)
	if len(a) == 0 || bytes.Equal(a, []byte("null")) {
		return mxhttp.MissingParam("missing auth_data")
	}
	if a[0] != '{' {
		return mxhttp.BadJSON("auth_data must be an object")
	}
	return nil
}

func (s *Service) postBackupVersion(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req backupInfoBody
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	ctx := r.Context()
	var version int64
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var max sql.NullInt64
		if err := tx.QueryRow(ctx, "SELECT MAX(version) FROM key_backup_versions WHERE user_id = $1", sess.UserID).Scan(&max); err != nil {
			return err
		}
		version = max.Int64 + 1
		_, err := tx.Exec(ctx, "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag) VALUES ($1, $2, $3, $4, 0)",
			sess.UserID, version, req.Algorithm, compact(req.AuthData))
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"version": strconv.FormatInt(version, 10)}, nil
}

func (s *Service) getBackupVersion(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	ctx := r.Context()
	var version int64
	if p := r.PathValue("version"); p != "" {
		v, ok := parseVersion(p)
		if !ok {
			return nil, errUnknownVersion
		}
		version = v
	} else {
		v, err := currentVersion(ctx, s.db, sess.UserID)
		if err != nil {
			return nil, err
		}
		if v == 0 {
			return nil, mxhttp.NotFound("no current backup version")
		}
		version = v
	}
	v, err := s.liveVersion(ctx, s.db, sess.UserID, version)
	if err != nil {
		return nil, err
	}
	count, err := s.backupCount(ctx, s.db, sess.UserID, version)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"algorithm": v.Algorithm,
		"auth_data": json.RawMessage(v.AuthData),
		"count":     count,
		"etag":      strconv.FormatInt(v.Etag, 10),
		"version":   strconv.FormatInt(version, 10),
	}, nil
}

func (s *Service) backupCount(ctx context.Context, q interface {
	QueryRow(ctx context.Context, q string, args ...any) *sql.Row
}, user id.UserID, version int64) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, "SELECT COUNT(*) FROM key_backup_keys WHERE user_id = $1 AND version = $2", user, version).Scan(&n)
	return n, err
}

func (s *Service) putBackupVersion(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req backupInfoBody
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	path := r.PathValue("version")
	if req.Version != nil && *req.Version != path {
		return nil, mxhttp.InvalidParam("version in body does not match the path")
	}
	version, ok := parseVersion(path)
	if !ok {
		return nil, errUnknownVersion
	}
	ctx := r.Context()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		v, err := s.liveVersion(ctx, tx, sess.UserID, version)
		if err != nil {
			return err
		}
		if v.Algorithm != req.Algorithm {
			return mxhttp.InvalidParam("algorithm does not match the backup's")
		}
		_, err = tx.Exec(ctx, "UPDATE key_backup_versions SET auth_data = $1 WHERE user_id = $2 AND version = $3", compact(req.AuthData), sess.UserID, version)
		return err
	})
	if err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) deleteBackupVersion(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	version, ok := parseVersion(r.PathValue("version"))
	if !ok {
		return nil, errUnknownVersion
	}
	ctx := r.Context()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		v, ok, err := s.loadVersion(ctx, tx, sess.UserID, version)
		if err != nil {
			return err
		}
		if !ok {
			return errUnknownVersion
		}
		if v.Deleted {
			return nil
		}
		if _, err := tx.Exec(ctx, "DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2", sess.UserID, version); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE key_backup_versions SET deleted = TRUE, etag = etag + 1 WHERE user_id = $1 AND version = $2", sess.UserID, version)
		return err
	})
	if err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

// keyBackupData is one backed-up session key.
type keyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

func (k *keyBackupData) check() error {
	if k.FirstMessageIndex == nil || k.ForwardedCount == nil || k.IsVerified == nil {
		return mxhttp.BadJSON("key data needs first_message_index, forwarded_count and is_verified")
	}
	if *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0 {
		return mxhttp.BadJSON("first_message_index and forwarded_count must not be negative")
	}
	if sd := bytes.TrimSpace(k.SessionData); len(sd) == 0 || sd[0] != '{' {
		return mxhttp.BadJSON("session_data must be an object")
	}
	return nil
}

// better reports whether k should replace old, by the spec's rules: a
// verified key beats an unverified one, then the lower first message
// index wins, then the lower forwarded count.
func (k *keyBackupData) better(old *keyBackupData) bool {
	if *k.IsVerified != *old.IsVerified {
		return *k.IsVerified
	}
	if *k.FirstMessageIndex != *old.FirstMessageIndex {
		return *k.FirstMessageIndex < *old.FirstMessageIndex
	}
	return *k.ForwardedCount < *old.ForwardedCount
}

type roomKeyBackup struct {
	Sessions map[id.SessionID]*keyBackupData `json:"sessions"`
}

type backupKey struct {
	room    id.RoomID
	session id.SessionID
}

// backupVersionParam reads the required "version" query parameter.
func backupVersionParam(r *http.Request) (int64, bool, error) {
	p := r.URL.Query().Get("version")
	if p == "" {
		return 0, false, mxhttp.MissingParam("missing version")
	}
	v, ok := parseVersion(p)
	return v, ok, nil
}

// knownVersionParam reads the "version" query parameter, which must name a
// version that can exist.
func knownVersionParam(r *http.Request) (int64, error) {
	version, valid, err := backupVersionParam(r)
	if err != nil {
		return 0, err
	}
	if !valid {
		return 0, errUnknownVersion
	}
	return version, nil
}

func (s *Service) putBackupKeys(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	version, valid, err := backupVersionParam(r)
	if err != nil {
		return nil, err
	}
	body, err := mxhttp.ReadBody(r, s.Limits.MaxBackupRequestBytes)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := id.RoomID(r.PathValue("roomId")), id.SessionID(r.PathValue("sessionId"))
	keys := map[backupKey]*keyBackupData{}
	switch {
	case sessionID != "":
		var k keyBackupData
		if err := mxhttp.Unmarshal(body, &k); err != nil {
			return nil, err
		}
		keys[backupKey{roomID, sessionID}] = &k
	case roomID != "":
		var rk roomKeyBackup
		if err := mxhttp.Unmarshal(body, &rk); err != nil {
			return nil, err
		}
		for sid, k := range rk.Sessions {
			keys[backupKey{roomID, sid}] = k
		}
	default:
		var all struct {
			Rooms map[id.RoomID]*roomKeyBackup `json:"rooms"`
		}
		if err := mxhttp.Unmarshal(body, &all); err != nil {
			return nil, err
		}
		for rid, rk := range all.Rooms {
			if rk == nil {
				return nil, mxhttp.BadJSON("room %s has no sessions", rid)
			}
			for sid, k := range rk.Sessions {
				keys[backupKey{rid, sid}] = k
			}
		}
	}
	for _, k := range keys {
		if k == nil {
			return nil, mxhttp.BadJSON("missing key data")
		}
		if err := k.check(); err != nil {
			return nil, err
		}
	}
	ctx := r.Context()
	var etag, count int64
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		cur, err := currentVersion(ctx, tx, sess.UserID)
		if err != nil {
			return err
		}
		if cur == 0 {
			return errUnknownVersion
		}
		if !valid || version != cur {
			return (&mxhttp.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION",
				Message: "wrong backup version"}).With("current_version", strconv.FormatInt(cur, 10))
		}
		changed := false
		for bk, k := range keys {
			old := &keyBackupData{FirstMessageIndex: new(int64), ForwardedCount: new(int64), IsVerified: new(bool)}
			err := tx.QueryRow(ctx, `SELECT first_message_index, forwarded_count, is_verified FROM key_backup_keys
				WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, sess.UserID, version, bk.room, bk.session).
				Scan(old.FirstMessageIndex, old.ForwardedCount, old.IsVerified)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				_, err = tx.Exec(ctx, `INSERT INTO key_backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, sess.UserID, version, bk.room, bk.session, *k.FirstMessageIndex, *k.ForwardedCount, *k.IsVerified, compact(k.SessionData))
			case err != nil:
			case k.better(old):
				_, err = tx.Exec(ctx, `UPDATE key_backup_keys SET first_message_index = $1, forwarded_count = $2, is_verified = $3, session_data = $4
					WHERE user_id = $5 AND version = $6 AND room_id = $7 AND session_id = $8`,
					*k.FirstMessageIndex, *k.ForwardedCount, *k.IsVerified, compact(k.SessionData), sess.UserID, version, bk.room, bk.session)
			default:
				continue
			}
			if err != nil {
				return err
			}
			changed = true
		}
		return s.keysChanged(ctx, tx, sess.UserID, version, changed, &etag, &count)
	})
	if err != nil {
		return nil, err
	}
	return keysAnswer(etag, count), nil
}

// keysChanged bumps the version's etag when its keys changed, then reads
// the etag and the key count.
func (s *Service) keysChanged(ctx context.Context, tx *storage.Tx, user id.UserID, version int64, changed bool, etag, count *int64) error {
	if changed {
		if _, err := tx.Exec(ctx, "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2", user, version); err != nil {
			return err
		}
	}
	if err := tx.QueryRow(ctx, "SELECT etag FROM key_backup_versions WHERE user_id = $1 AND version = $2", user, version).Scan(etag); err != nil {
		return err
	}
	n, err := s.backupCount(ctx, tx, user, version)
	*count = n
	return err
}

// keysAnswer is the answer to a change of backed-up keys.
func keysAnswer(etag, count int64) map[string]any {
	return map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count}
}

// keysWhere narrows a statement on key_backup_keys to the user's version
// and, when given, the room and the session.
func keysWhere(stmt string, user id.UserID, version int64, roomID id.RoomID, sessionID id.SessionID) (string, []any) {
	stmt += " WHERE user_id = $1 AND version = $2"
	args := []any{user, version}
	if roomID != "" {
		stmt += " AND room_id = $3"
		args = append(args, roomID)
	}
	if sessionID != "" {
		stmt += " AND session_id = $4"
		args = append(args, sessionID)
	}
	return stmt, args
}

func (s *Service) getBackupKeys(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	version, err := knownVersionParam(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	if _, err := s.liveVersion(ctx, s.db, sess.UserID, version); err != nil {
		return nil, err
	}
	roomID, sessionID := id.RoomID(r.PathValue("roomId")), id.SessionID(r.PathValue("sessionId"))
	q, args := keysWhere("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM key_backup_keys",
		sess.UserID, version, roomID, sessionID)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("load backup keys: %w", err)
	}
	defer rows.Close()
	all := map[id.RoomID]*roomKeyBackup{}
	for rows.Next() {
		var bk backupKey
		k := &keyBackupData{FirstMessageIndex: new(int64), ForwardedCount: new(int64), IsVerified: new(bool)}
		var sd string
		if err := rows.Scan(&bk.room, &bk.session, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, &sd); err != nil {
			return nil, err
		}
		k.SessionData = json.RawMessage(sd)
		if all[bk.room] == nil {
			all[bk.room] = &roomKeyBackup{Sessions: map[id.SessionID]*keyBackupData{}}
		}
		all[bk.room].Sessions[bk.session] = k
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case sessionID != "":
		if rk := all[roomID]; rk != nil && rk.Sessions[sessionID] != nil {
			return rk.Sessions[sessionID], nil
		}
		return nil, mxhttp.NotFound("key not found")
	case roomID != "":
		if rk := all[roomID]; rk != nil {
			return rk, nil
		}
		return &roomKeyBackup{Sessions: map[id.SessionID]*keyBackupData{}}, nil
	}
	return map[string]any{"rooms": all}, nil
}

func (s *Service) deleteBackupKeys(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	version, err := knownVersionParam(r)
	if err != nil {
		return nil, err
	}
	roomID, sessionID := id.RoomID(r.PathValue("roomId")), id.SessionID(r.PathValue("sessionId"))
	ctx := r.Context()
	var etag, count int64
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := s.liveVersion(ctx, tx, sess.UserID, version); err != nil {
			return err
		}
		q, args := keysWhere("DELETE FROM key_backup_keys", sess.UserID, version, roomID, sessionID)
		res, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		return s.keysChanged(ctx, tx, sess.UserID, version, n > 0, &etag, &count)
	})
	if err != nil {
		return nil, err
	}
	return keysAnswer(etag, count), nil
}
