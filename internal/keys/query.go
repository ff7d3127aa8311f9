package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/sync"
)

// Cross-signing key types, as stored.
const (
	keyMaster      = "master"
	keySelfSigning = "self_signing"
	keyUserSigning = "user_signing"
)

// maxQueryUsers caps the users of one /keys/query.
const maxQueryUsers = 10000

// sigMap is signer user -> signer key ID -> signature.
type sigMap map[string]map[string]string

// storedSigs loads the extra signatures on target's keys that viewer may
// see (those made by target itself and by viewer), by target key.
func (s *Service) storedSigs(ctx context.Context, target, viewer id.UserID) (map[string]sigMap, error) {
	rows, err := s.db.Query(ctx, `SELECT target_key, signer_user, signer_key_id, signature FROM e2e_signatures
		WHERE target_user = $1 AND (signer_user = $1 OR signer_user = $2)`, target, viewer)
	if err != nil {
		return nil, fmt.Errorf("load signatures: %w", err)
	}
	defer rows.Close()
	out := map[string]sigMap{}
	for rows.Next() {
		var key, signer, keyID, sig string
		if err := rows.Scan(&key, &signer, &keyID, &sig); err != nil {
			return nil, err
		}
		if out[key] == nil {
			out[key] = sigMap{}
		}
		if out[key][signer] == nil {
			out[key][signer] = map[string]string{}
		}
		out[key][signer][keyID] = sig
	}
	return out, rows.Err()
}

// decorate returns raw with extra signatures merged into "signatures" and,
// if unsigned is non-nil, an "unsigned" member.
func decorate(raw string, extra sigMap, unsigned map[string]any) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil {
		return nil, fmt.Errorf("stored key: %w", err)
	}
	if len(extra) > 0 {
		sigs := sigMap{}
		if s, ok := obj["signatures"]; ok {
			json.Unmarshal(s, &sigs)
		}
		for signer, m := range extra {
			if sigs[signer] == nil {
				sigs[signer] = map[string]string{}
			}
			for k, v := range m {
				sigs[signer][k] = v
			}
		}
		b, err := json.Marshal(sigs)
		if err != nil {
			return nil, err
		}
		obj["signatures"] = b
	}
	if unsigned != nil {
		b, err := json.Marshal(unsigned)
		if err != nil {
			return nil, err
		}
		obj["unsigned"] = b
	}
	return json.Marshal(obj)
}

// crossSigningKey is a stored cross-signing key.
type crossSigningKey struct {
	Type      string
	PublicKey string
	JSON      string
}

// crossSigningKeys loads a user's cross-signing keys by type.
func (s *Service) crossSigningKeys(ctx context.Context, user id.UserID) (map[string]crossSigningKey, error) {
	rows, err := s.db.Query(ctx, "SELECT key_type, public_key, key_json FROM e2e_cross_signing_keys WHERE user_id = $1", user)
	if err != nil {
		return nil, fmt.Errorf("load cross-signing keys: %w", err)
	}
	defer rows.Close()
	out := map[string]crossSigningKey{}
	for rows.Next() {
		var k crossSigningKey
		if err := rows.Scan(&k.Type, &k.PublicKey, &k.JSON); err != nil {
			return nil, err
		}
		out[k.Type] = k
	}
	return out, rows.Err()
}

// deviceKeyRows loads a user's device keys by device.
func (s *Service) deviceKeyRows(ctx context.Context, user id.UserID) (map[id.DeviceID]string, error) {
	rows, err := s.db.Query(ctx, "SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = $1", user)
	if err != nil {
		return nil, fmt.Errorf("load device keys: %w", err)
	}
	defer rows.Close()
	out := map[id.DeviceID]string{}
	for rows.Next() {
		var d id.DeviceID
		var raw string
		if err := rows.Scan(&d, &raw); err != nil {
			return nil, err
		}
		out[d] = raw
	}
	return out, rows.Err()
}

// queryResponse is the /keys/query response.
type queryResponse struct {
	Failures        map[string]any                                `json:"failures"`
	DeviceKeys      map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
	MasterKeys      map[id.UserID]json.RawMessage                 `json:"master_keys"`
	SelfSigningKeys map[id.UserID]json.RawMessage                 `json:"self_signing_keys"`
	UserSigningKeys map[id.UserID]json.RawMessage                 `json:"user_signing_keys"`
}

func (s *Service) postQuery(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
		Timeout    *int64                      `json:"timeout"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, mxhttp.MissingParam("missing device_keys")
	}
	if len(req.DeviceKeys) > maxQueryUsers {
		return nil, mxhttp.TooLarge("at most %d users per query", maxQueryUsers)
	}
	ctx := r.Context()
	resp := newQueryResponse()
	for user, want := range req.DeviceKeys {
		if !s.isLocal(user) {
			continue
		}
		if err := s.queryUser(ctx, sess.UserID, user, want, resp); err != nil {
			return nil, err
		}
	}
	if err := s.queryRemote(ctx, req.DeviceKeys, remoteTimeout(req.Timeout), resp); err != nil {
		return nil, err
	}
	if err := s.addViewerSignatures(ctx, sess.UserID, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// queryUser adds user's keys, as viewer sees them, to resp.
func (s *Service) queryUser(ctx context.Context, viewer, user id.UserID, want []id.DeviceID, resp *queryResponse) error {
	sigs, err := s.storedSigs(ctx, user, viewer)
	if err != nil {
		return err
	}
	devKeys, err := s.deviceKeyRows(ctx, user)
	if err != nil {
		return err
	}
	names := map[id.DeviceID]*string{}
	if len(devKeys) > 0 {
		devs, err := s.accounts.Devices(ctx, user)
		if err != nil {
			return err
		}
		for _, d := range devs {
			names[d.DeviceID] = d.DisplayName
		}
	}
	out := map[id.DeviceID]json.RawMessage{}
	wanted := map[id.DeviceID]bool{}
	for _, d := range want {
		wanted[d] = true
	}
	for dev, raw := range devKeys {
		if len(want) > 0 && !wanted[dev] {
			continue
		}
		unsigned := map[string]any{}
		if n := names[dev]; n != nil {
			unsigned["device_display_name"] = *n
		}
		b, err := decorate(raw, sigs[string(dev)], unsigned)
		if err != nil {
			return err
		}
		out[dev] = b
	}
	resp.DeviceKeys[user] = out
	cs, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return err
	}
	for typ, dst := range map[string]map[id.UserID]json.RawMessage{
		keyMaster: resp.MasterKeys, keySelfSigning: resp.SelfSigningKeys, keyUserSigning: resp.UserSigningKeys,
	} {
		k, ok := cs[typ]
		if !ok || (typ == keyUserSigning && user != viewer) {
			continue
		}
		b, err := decorate(k.JSON, sigs[k.PublicKey], nil)
		if err != nil {
			return err
		}
		dst[user] = b
	}
	return nil
}

func (s *Service) getChanges(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		return nil, mxhttp.MissingParam("missing from")
	}
	from, err := sync.ParseToken(q.Get("from"))
	if err != nil {
		return nil, mxhttp.InvalidParam("invalid from token")
	}
	to := sync.Token{Pos: s.db.Visible()}
	if q.Get("to") != "" {
		if to, err = sync.ParseToken(q.Get("to")); err != nil {
			return nil, mxhttp.InvalidParam("invalid to token")
		}
	}
	to.Pos = min(to.Pos, s.db.Visible())
	changed, left, err := s.deviceLists(r.Context(), sess.UserID, from.Pos, to.Pos)
	if err != nil {
		return nil, err
	}
	return map[string][]id.UserID{"changed": nonNil(changed), "left": nonNil(left)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
