package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// invalidSignature is the spec's M_INVALID_SIGNATURE error.
func invalidSignature(msg string) *mxhttp.Error {
	return &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_INVALID_SIGNATURE", Message: msg}
}

// deviceKeys is the part of a device_keys object the server checks.
type deviceKeys struct {
	UserID     id.UserID                    `json:"user_id"`
	DeviceID   id.DeviceID                  `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// canonical returns the canonical JSON of raw without its signatures and
// unsigned members: the bytes a signature covers.
func canonical(raw []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return canonicaljson.CanonicalJSON(b)
}

// verifySigned checks raw's signature by signer's key keyID (e.g.
// "ed25519:DEVICE") with the base64 ed25519 public key pub.
func verifySigned(raw []byte, signer id.UserID, keyID, pub string) error {
	return signutil.VerifyJSON(string(signer), id.KeyID(keyID), id.SigningKey(pub), json.RawMessage(raw))
}

// checkDeviceKeys validates an uploaded device_keys object for sess.
func checkDeviceKeys(raw []byte, sess *accounts.Session) error {
	var dk deviceKeys
	if err := json.Unmarshal(raw, &dk); err != nil {
		return mxhttp.BadJSON("invalid device_keys: %v", err)
	}
	if dk.UserID != sess.UserID || dk.DeviceID != sess.DeviceID {
		return mxhttp.InvalidParam("device_keys user_id and device_id must be those of the uploading device")
	}
	// Missing required keys make the object malformed: M_BAD_JSON, as the spec's
	// error codes define it (and Complement's TestUploadKey expects).
	if len(dk.Algorithms) == 0 {
		return mxhttp.BadJSON("device_keys has no algorithms")
	}
	keyID := "ed25519:" + string(dk.DeviceID)
	pub := dk.Keys[keyID]
	if pub == "" || dk.Keys["curve25519:"+string(dk.DeviceID)] == "" {
		return mxhttp.BadJSON("device_keys must have the device's ed25519 and curve25519 keys")
	}
	if len(dk.Signatures) == 0 {
		// Keys with no signatures at all are kept as given, as other
		// servers keep them (and Complement uploads them): the spec has
		// clients check a device's self-signature before they trust it,
		// so an unsigned device is shown as unverifiable, never trusted.
		// A signature that is there must be right, though.
		return nil
	}
	if err := verifySigned(raw, dk.UserID, keyID, pub); err != nil {
		return invalidSignature("device_keys are not signed by the device's ed25519 key")
	}
	return nil
}

// withSignaturesMember gives device keys uploaded without signatures an
// empty signatures object, which /keys/query answers must have.
func withSignaturesMember(raw json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, mxhttp.BadJSON("invalid device_keys: %v", err)
	}
	if sigs, ok := m["signatures"]; ok && !bytes.Equal(bytes.TrimSpace(sigs), []byte("null")) {
		return raw, nil
	}
	m["signatures"] = json.RawMessage("{}")
	return json.Marshal(m)
}

// splitKeyID splits "<algorithm>:<key_id>".
func splitKeyID(s string) (alg, keyID string, ok bool) {
	alg, keyID, ok = strings.Cut(s, ":")
	return alg, keyID, ok && alg != "" && keyID != ""
}

func (s *Service) postUpload(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if bytes.Equal(bytes.TrimSpace(req.DeviceKeys), []byte("null")) {
		req.DeviceKeys = nil
	}
	ctx := r.Context()
	if req.DeviceKeys != nil {
		if err := checkDeviceKeys(req.DeviceKeys, sess); err != nil {
			return nil, err
		}
		var err error
		if req.DeviceKeys, err = withSignaturesMember(req.DeviceKeys); err != nil {
			return nil, err
		}
	}
	if len(req.OneTimeKeys) > s.Limits.MaxOneTimeKeysPerUpload {
		return nil, mxhttp.TooLarge("at most %d one-time keys per upload", s.Limits.MaxOneTimeKeysPerUpload)
	}
	for k, v := range req.OneTimeKeys {
		if _, _, ok := splitKeyID(k); !ok {
			return nil, mxhttp.InvalidParam("one-time key name %q is not <algorithm>:<key_id>", k)
		}
		if !validKeyObject(v) {
			return nil, mxhttp.BadJSON("one-time key %q must be a string or an object with key and signatures", k)
		}
	}
	fallbackAlgs := map[string]bool{}
	for k, v := range req.FallbackKeys {
		alg, _, ok := splitKeyID(k)
		if !ok {
			return nil, mxhttp.InvalidParam("fallback key name %q is not <algorithm>:<key_id>", k)
		}
		if fallbackAlgs[alg] {
			return nil, mxhttp.InvalidParam("at most one fallback key per algorithm")
		}
		fallbackAlgs[alg] = true
		if !validKeyObject(v) {
			return nil, mxhttp.BadJSON("fallback key %q must be a string or an object with key and signatures", k)
		}
	}
	changed := false
	var changes []deviceChange
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		changed = false
		changes = changes[:0]
		if req.DeviceKeys != nil {
			c, err := storeDeviceKeys(ctx, tx, sess, req.DeviceKeys)
			if err != nil {
				return err
			}
			changed = c
		}
		if err := s.storeOneTimeKeys(ctx, tx, sess, req.OneTimeKeys); err != nil {
			return err
		}
		for k, v := range req.FallbackKeys {
			alg, keyID, _ := splitKeyID(k)
			var old string
			err := tx.QueryRow(ctx, "SELECT key_json FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
				sess.UserID, sess.DeviceID, alg, keyID).Scan(&old)
			if err == nil && sameJSON([]byte(old), v) {
				continue // a retried upload must not mark a used key unused
			}
			if _, err := tx.Exec(ctx, "DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
				sess.UserID, sess.DeviceID, alg); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, FALSE)",
				sess.UserID, sess.DeviceID, alg, keyID, compact(v)); err != nil {
				return err
			}
			s.cache.touchAfter(tx, sess.UserID)
		}
		if changed {
			return s.recordDeviceChange(ctx, tx, sess.UserID, sess.DeviceID, &changes)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.wakeSharers(ctx, sess.UserID)
		s.announceDevices(ctx, changes)
	}
	if s.OnKeyCounts != nil {
		s.OnKeyCounts(ctx, sess.UserID, sess.DeviceID)
	}
	counts, err := s.otkCounts(ctx, sess.UserID, sess.DeviceID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_key_counts": counts}, nil
}

// validKeyObject accepts a key as the spec defines it: a bare string
// (unsigned curve25519) or an object with a "key" string and
// "signatures".
func validKeyObject(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		return json.Unmarshal(v, &s) == nil
	}
	var obj struct {
		Key        *string                      `json:"key"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	return len(v) > 0 && v[0] == '{' && json.Unmarshal(v, &obj) == nil && obj.Key != nil && obj.Signatures != nil
}

func compact(v []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return string(v)
	}
	return b.String()
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	ca, err1 := canonicaljson.CanonicalJSON(a)
	cb, err2 := canonicaljson.CanonicalJSON(b)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// storeDeviceKeys saves the device's identity keys, reporting whether they
// differ from the stored ones.
func storeDeviceKeys(ctx context.Context, tx *storage.Tx, sess *accounts.Session, raw []byte) (bool, error) {
	var old string
	err := tx.QueryRow(ctx, "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2", sess.UserID, sess.DeviceID).Scan(&old)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.Exec(ctx, "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)", sess.UserID, sess.DeviceID, compact(raw))
		return err == nil, err
	case err != nil:
		return false, err
	}
	if sameJSON([]byte(old), raw) {
		return false, nil
	}
	if _, err := tx.Exec(ctx, "UPDATE e2e_device_keys SET key_json = $1 WHERE user_id = $2 AND device_id = $3", compact(raw), sess.UserID, sess.DeviceID); err != nil {
		return false, err
	}
	// Signatures made over the old keys no longer apply.
	if _, err := tx.Exec(ctx, "DELETE FROM e2e_signatures WHERE target_user = $1 AND target_key = $2", sess.UserID, sess.DeviceID); err != nil {
		return false, err
	}
	return true, nil
}

func (s *Service) storeOneTimeKeys(ctx context.Context, tx *storage.Tx, sess *accounts.Session, keys map[string]json.RawMessage) error {
	if len(keys) == 0 {
		return nil
	}
	var seq, count int64
	if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2",
		sess.UserID, sess.DeviceID).Scan(&seq, &count); err != nil {
		return err
	}
	seq++
	added := 0
	for k, v := range keys {
		alg, keyID, _ := splitKeyID(k)
		var old string
		err := tx.QueryRow(ctx, "SELECT key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
			sess.UserID, sess.DeviceID, alg, keyID).Scan(&old)
		if err == nil {
			if !sameJSON([]byte(old), v) {
				return mxhttp.InvalidParam("one-time key %s already exists with different content", k)
			}
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, seq) VALUES ($1, $2, $3, $4, $5, $6)",
			sess.UserID, sess.DeviceID, alg, keyID, compact(v), seq); err != nil {
			return err
		}
		s.cache.touchAfter(tx, sess.UserID)
		added++
	}
	if count+int64(added) > int64(s.Limits.MaxOneTimeKeysPerDevice) {
		return mxhttp.TooLarge("a device may hold at most %d unclaimed one-time keys", s.Limits.MaxOneTimeKeysPerDevice)
	}
	return nil
}

// otkCounts counts a device's unclaimed one-time keys per algorithm;
// signed_curve25519 is always present.
func (s *Service) otkCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, error) {
	rows, err := s.db.Query(ctx, "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm", user, device)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{"signed_curve25519": 0}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, err
		}
		out[alg] = n
	}
	return out, rows.Err()
}

// KeyCounts returns a device's unclaimed one-time key counts per algorithm
// and the algorithms of its unused fallback keys, as /sync reports them.
func (s *Service) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error) {
	counts, err := s.otkCounts(ctx, user, device)
	if err != nil {
		return nil, nil, err
	}
	fallback, err := s.unusedFallbackTypes(ctx, user, device)
	if err != nil {
		return nil, nil, err
	}
	return counts, fallback, nil
}

// unusedFallbackTypes lists the algorithms of a device's unused fallback
// keys (never nil).
func (s *Service) unusedFallbackTypes(ctx context.Context, user id.UserID, device id.DeviceID) ([]string, error) {
	rows, err := s.db.Query(ctx, "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = FALSE ORDER BY algorithm", user, device)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var alg string
		if err := rows.Scan(&alg); err != nil {
			return nil, err
		}
		out = append(out, alg)
	}
	return out, rows.Err()
}

// isLocal reports whether user belongs to this server.
func (s *Service) isLocal(user id.UserID) bool {
	_, server, err := user.Parse()
	return err == nil && server == s.accounts.ServerName()
}

func (s *Service) postClaim(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req claimRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	ctx := r.Context()
	local := map[id.UserID]map[id.DeviceID]string{}
	for user, devs := range req.OneTimeKeys {
		if s.isLocal(user) {
			local[user] = devs
		}
	}
	result, err := s.claimLocal(ctx, local)
	if err != nil {
		return nil, err
	}
	failures := map[string]any{}
	s.claimRemote(ctx, req.OneTimeKeys, remoteTimeout(req.Timeout), result, failures)
	return map[string]any{"one_time_keys": result, "failures": failures}, nil
}

// claimOne takes the device's oldest one-time key of alg, or else marks
// its fallback key used and returns it. raw is "" when there is neither.
func claimOne(ctx context.Context, tx *storage.Tx, user id.UserID, device id.DeviceID, alg string) (keyID, raw string, err error) {
	err = tx.QueryRow(ctx, "SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY seq, key_id LIMIT 1",
		user, device, alg).Scan(&keyID, &raw)
	if err == nil {
		_, err = tx.Exec(ctx, "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4", user, device, alg, keyID)
		return keyID, raw, err
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", err
	}
	err = tx.QueryRow(ctx, "SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
		user, device, alg).Scan(&keyID, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	_, err = tx.Exec(ctx, "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3", user, device, alg)
	return keyID, raw, err
}
