package federation

import (
	"encoding/json"
	"fmt"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
)

// KeyValidity is how long this node's key response says its current key is
// valid (valid_until_ts); others fetch it again after that.
const KeyValidity = 24 * time.Hour

// ownKeys is this node's signing key and its retired verify keys.
type ownKeys struct {
	serverName string
	key        *federation.SigningKey
	old        []OldKey
}

// keyResponseOut is a key response as this node writes it: with
// old_verify_keys even when empty.
type keyResponseOut struct {
	ServerName    string                                  `json:"server_name"`
	VerifyKeys    map[id.KeyID]federation.ServerVerifyKey `json:"verify_keys"`
	OldVerifyKeys map[id.KeyID]federation.OldVerifyKey    `json:"old_verify_keys"`
	ValidUntilTS  jsontime.UnixMilli                      `json:"valid_until_ts"`
}

// response returns this node's key response, valid for KeyValidity from
// now and signed with the current key.
func (o *ownKeys) response(now time.Time) ([]byte, error) {
	r := keyResponseOut{
		ServerName:    o.serverName,
		VerifyKeys:    map[id.KeyID]federation.ServerVerifyKey{o.key.ID: {Key: o.key.Pub}},
		OldVerifyKeys: map[id.KeyID]federation.OldVerifyKey{},
		ValidUntilTS:  jsontime.UM(now.Add(KeyValidity)),
	}
	for _, k := range o.old {
		if k.ID != o.key.ID {
			r.OldVerifyKeys[k.ID] = federation.OldVerifyKey{Key: k.Key, ExpiredTS: jsontime.UMInt(k.ExpiredTS)}
		}
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode own key response: %w", err)
	}
	return addSignature(raw, o.serverName, o.key)
}

// verifyKey returns this node's key with the ID, if it was valid at ts
// (milliseconds).
func (o *ownKeys) verifyKey(keyID id.KeyID, ts int64) (id.SigningKey, bool) {
	if keyID == o.key.ID {
		return o.key.Pub, true
	}
	for _, k := range o.old {
		if k.ID == keyID && ts < k.ExpiredTS {
			return k.Key, true
		}
	}
	return "", false
}
