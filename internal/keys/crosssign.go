package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// csKeyBody is an uploaded cross-signing key.
type csKeyBody struct {
	UserID     id.UserID                    `json:"user_id"`
	Usage      []string                     `json:"usage"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// parsedCSKey is a validated uploaded cross-signing key.
type parsedCSKey struct {
	typ string
	pub string
	raw json.RawMessage
}

// parseCSKey validates raw as the user's cross-signing key of type typ.
// A missing or null key gives nil.
func parseCSKey(raw json.RawMessage, typ string, user id.UserID) (*parsedCSKey, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var k csKeyBody
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, mxhttp.BadJSON("invalid %s key: %v", typ, err)
	}
	if k.UserID != user {
		return nil, mxhttp.InvalidParam("%s key user_id must be your own user ID", typ)
	}
	if !slices.Contains(k.Usage, typ) {
		return nil, mxhttp.InvalidParam("%s key usage must include %q", typ, typ)
	}
	if len(k.Keys) != 1 {
		return nil, mxhttp.InvalidParam("%s key must have exactly one key", typ)
	}
	for keyID, pub := range k.Keys {
		alg, name, ok := strings.Cut(keyID, ":")
		if !ok || alg != "ed25519" || name != pub || pub == "" {
			return nil, mxhttp.InvalidParam("%s key must be an ed25519 key named by its public key", typ)
		}
		return &parsedCSKey{typ: typ, pub: pub, raw: raw}, nil
	}
	panic("unreachable")
}

func (s *Service) postDeviceSigning(w http.ResponseWriter, r *http.Request) (any, error) {
	ctx := r.Context()
	sess, err := s.accounts.AuthenticateRequest(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		MasterKey      json.RawMessage    `json:"master_key"`
		SelfSigningKey json.RawMessage    `json:"self_signing_key"`
		UserSigningKey json.RawMessage    `json:"user_signing_key"`
		Auth           *accounts.AuthDict `json:"auth"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var uploaded []*parsedCSKey
	for _, k := range []struct {
		raw json.RawMessage
		typ string
	}{{req.MasterKey, keyMaster}, {req.SelfSigningKey, keySelfSigning}, {req.UserSigningKey, keyUserSigning}} {
		p, err := parseCSKey(k.raw, k.typ, sess.UserID)
		if err != nil {
			return nil, err
		}
		if p != nil {
			uploaded = append(uploaded, p)
		}
	}
	existing, err := s.crossSigningKeys(ctx, sess.UserID)
	if err != nil {
		return nil, err
	}
	// UIA is needed unless there is no master key yet, or the request
	// repeats exactly the stored keys (a retried upload).
	if _, ok := existing[keyMaster]; ok {
		same := req.MasterKey != nil && len(uploaded) > 0
		for _, k := range uploaded {
			if cur, ok := existing[k.typ]; !ok || !sameJSON([]byte(cur.JSON), k.raw) {
				same = false
			}
		}
		if !same {
			if err := s.accounts.CrossSigningResetUIA(r, sess, req.Auth); err != nil {
				return nil, err
			}
		}
	}
	if len(uploaded) == 0 {
		return mxhttp.Empty, nil
	}
	masterPub := ""
	if m, ok := existing[keyMaster]; ok {
		masterPub = m.PublicKey
	}
	for _, k := range uploaded {
		if k.typ == keyMaster {
			masterPub = k.pub
		}
	}
	if masterPub == "" {
		return nil, mxhttp.MissingParam("no master key available")
	}
	for _, k := range uploaded {
		if k.typ == keyMaster {
			continue
		}
		if err := verifySigned(k.raw, sess.UserID, "ed25519:"+masterPub, masterPub); err != nil {
			return nil, invalidSignature(k.typ + " key is not signed by the master key")
		}
	}
	devs, err := s.accounts.Devices(ctx, sess.UserID)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		for _, k := range uploaded {
			if string(d.DeviceID) == k.pub {
				return nil, mxhttp.Forbidden("key ID in use by a device")
			}
		}
	}
	changed := false
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		changed = false
		for _, k := range uploaded {
			if cur, ok := existing[k.typ]; ok {
				if sameJSON([]byte(cur.JSON), k.raw) {
					continue
				}
				if cur.PublicKey != k.pub {
					// Signatures of and by the replaced key are void.
					if _, err := tx.Exec(ctx, "DELETE FROM e2e_signatures WHERE target_user = $1 AND target_key = $2", sess.UserID, cur.PublicKey); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "DELETE FROM e2e_signatures WHERE signer_user = $1 AND signer_key_id = $2", sess.UserID, "ed25519:"+cur.PublicKey); err != nil {
						return err
					}
				}
			}
			if _, err := tx.Exec(ctx, "DELETE FROM e2e_cross_signing_keys WHERE user_id = $1 AND key_type = $2", sess.UserID, k.typ); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json) VALUES ($1, $2, $3, $4)",
				sess.UserID, k.typ, k.pub, compact(k.raw)); err != nil {
				return err
			}
			changed = true
		}
		if changed {
			return s.recordChange(ctx, tx, sess.UserID, "")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.wakeSharers(ctx, sess.UserID)
		s.announceSigningKeys(ctx, sess.UserID)
	}
	return mxhttp.Empty, nil
}

// newSig is a verified signature to store.
type newSig struct {
	targetUser id.UserID
	targetKey  string
	keyID      string
	sig        string
}

func (s *Service) postSignatures(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req map[id.UserID]map[string]json.RawMessage
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	self := sess.UserID
	ownCS, err := s.crossSigningKeys(ctx, self)
	if err != nil {
		return nil, err
	}
	ownDevs, err := s.deviceKeyRows(ctx, self)
	if err != nil {
		return nil, err
	}
	failures := map[id.UserID]map[string]any{}
	fail := func(u id.UserID, keyID string, e *mxhttp.Error) {
		if failures[u] == nil {
			failures[u] = map[string]any{}
		}
		failures[u][keyID] = e.Body()
	}
	var sigs []newSig
	otherUsers := map[id.UserID]bool{}
	for target, objs := range req {
		var targetCS map[string]crossSigningKey
		if target != self {
			if s.isLocal(target) {
				targetCS, err = s.crossSigningKeys(ctx, target)
			} else {
				targetCS, err = s.remoteMasterKey(ctx, target)
			}
			if err != nil {
				return nil, err
			}
		}
		for keyID, obj := range objs {
			var stored string
			allowed := map[string]string{} // signer key ID -> public key
			switch {
			case target == self && ownCS[keyMaster].PublicKey == keyID:
				stored = ownCS[keyMaster].JSON
				for dev, raw := range ownDevs {
					var dk deviceKeys
					if json.Unmarshal([]byte(raw), &dk) == nil {
						kid := "ed25519:" + string(dev)
						allowed[kid] = dk.Keys[kid]
					}
				}
			case target == self && ownDevs[id.DeviceID(keyID)] != "":
				stored = ownDevs[id.DeviceID(keyID)]
				if ssk, ok := ownCS[keySelfSigning]; ok {
					allowed["ed25519:"+ssk.PublicKey] = ssk.PublicKey
				}
			case target != self && targetCS[keyMaster].PublicKey == keyID:
				stored = targetCS[keyMaster].JSON
				if usk, ok := ownCS[keyUserSigning]; ok {
					allowed["ed25519:"+usk.PublicKey] = usk.PublicKey
				}
			default:
				fail(target, keyID, mxhttp.NotFound("unknown key"))
				continue
			}
			found, e := checkUploadedSignatures(obj, stored, self, allowed)
			if e != nil {
				fail(target, keyID, e)
				continue
			}
			for kid, sig := range found {
				sigs = append(sigs, newSig{targetUser: target, targetKey: keyID, keyID: kid, sig: sig})
			}
			if len(found) > 0 && target != self {
				otherUsers[target] = true
			}
		}
	}
	if len(sigs) > 0 {
		if err := s.storeSignatures(ctx, self, sigs, ownDevs, otherUsers); err != nil {
			return nil, err
		}
	}
	return map[string]any{"failures": failures}, nil
}

// checkUploadedSignatures checks an uploaded signed object against the
// stored key and returns the new signatures by self in it, each verified
// with an allowed signing key.
func checkUploadedSignatures(obj json.RawMessage, stored string, self id.UserID, allowed map[string]string) (map[string]string, *mxhttp.Error) {
	var body struct {
		Signatures map[id.UserID]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(obj, &body); err != nil {
		return nil, mxhttp.BadJSON("invalid signed object")
	}
	got, err := canonical(obj)
	if err != nil {
		return nil, mxhttp.BadJSON("invalid signed object")
	}
	want, err := canonical([]byte(stored))
	if err != nil {
		return nil, mxhttp.Unknown("stored key is unreadable")
	}
	if !bytes.Equal(got, want) {
		return nil, mxhttp.InvalidParam("signed object does not match the stored key")
	}
	var storedBody struct {
		Signatures map[id.UserID]map[string]string `json:"signatures"`
	}
	json.Unmarshal([]byte(stored), &storedBody)
	found := map[string]string{}
	for kid, sig := range body.Signatures[self] {
		if storedBody.Signatures[self][kid] == sig {
			continue // already part of the key as uploaded
		}
		pub, ok := allowed[kid]
		if !ok || pub == "" {
			return nil, invalidSignature("signature by " + kid + " is not allowed here")
		}
		if err := signutil.VerifyJSONCanonical(id.SigningKey(pub), sig, want); err != nil {
			return nil, invalidSignature("invalid signature by " + kid)
		}
		found[kid] = sig
	}
	if len(found) == 0 && len(body.Signatures[self]) == 0 {
		return nil, invalidSignature("no signature by " + string(self))
	}
	return found, nil
}

// storeSignatures stores verified signatures made by self and records the
// changes: of self's devices (announced to other servers as device-list
// updates) and master key (as a signing key update) for everyone sharing a
// room with self, of other users' keys for self alone.
func (s *Service) storeSignatures(ctx context.Context, self id.UserID, sigs []newSig, ownDevs map[id.DeviceID]string, otherUsers map[id.UserID]bool) error {
	ownChanged, masterChanged := false, false
	var changes []deviceChange
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		ownChanged, masterChanged = false, false
		changes = changes[:0]
		devices := map[id.DeviceID]bool{}
		for _, sg := range sigs {
			if _, err := tx.Exec(ctx, "DELETE FROM e2e_signatures WHERE target_user = $1 AND target_key = $2 AND signer_user = $3 AND signer_key_id = $4",
				sg.targetUser, sg.targetKey, self, sg.keyID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO e2e_signatures (target_user, target_key, signer_user, signer_key_id, signature) VALUES ($1, $2, $3, $4, $5)",
				sg.targetUser, sg.targetKey, self, sg.keyID, sg.sig); err != nil {
				return err
			}
			if sg.targetUser != self {
				continue
			}
			ownChanged = true
			if ownDevs[id.DeviceID(sg.targetKey)] != "" {
				devices[id.DeviceID(sg.targetKey)] = true
			} else {
				masterChanged = true
			}
		}
		if ownChanged && len(devices) == 0 {
			if err := s.recordChange(ctx, tx, self, ""); err != nil {
				return err
			}
		}
		for dev := range devices {
			if err := s.recordDeviceChange(ctx, tx, self, dev, &changes); err != nil {
				return err
			}
		}
		for u := range otherUsers {
			// Only the signer sees this change: the signature is
			// visible to nobody else.
			if err := s.recordChange(ctx, tx, u, self); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if ownChanged {
		s.wakeSharers(ctx, self)
		s.announceDevices(ctx, changes)
	}
	if masterChanged {
		s.announceSigningKeys(ctx, self)
	}
	if len(otherUsers) > 0 {
		s.wake(self)
	}
	return nil
}
