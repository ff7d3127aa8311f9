package keys

import (
	"context"
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// FederationClient makes signed requests to other servers
// (*federation.Client of mautrix implements it).
type FederationClient interface {
	MakeRequest(ctx context.Context, serverName string, authenticate bool, method string, path mautrix.PrefixableURLPath, reqJSON, respJSON any) error
}

// EDUSender queues EDUs for another server; the federation outbox
// implements it, delivering them persistently and in order.
type EDUSender interface {
	SendEDU(ctx context.Context, destination, eduType string, content any) error
}

// EnableFederation lets the service reach other servers: client asks
// them for keys and device lists, edus carries to-device messages and
// device-list updates to them. Call it before serving; without it, remote
// users are reported as failures and messages for them are dropped.
func (s *Service) EnableFederation(client FederationClient, edus EDUSender) {
	s.fed = client
	s.edus = edus
}

// FederationRoutes registers the Server-Server endpoints of this package
// with handle (the federation listener's authenticated Handle).
func (s *Service) FederationRoutes(handle func(pattern string, h http.Handler)) {
	const v1 = "/_matrix/federation/v1"
	handle("GET "+v1+"/user/devices/{userId}", mxhttp.Handle(s.fedUserDevices))
	handle("POST "+v1+"/user/keys/query", mxhttp.Handle(s.fedKeysQuery))
	handle("POST "+v1+"/user/keys/claim", mxhttp.Handle(s.fedKeysClaim))
}

// localUserParam reads the path's user ID, which must be of this server.
func (s *Service) localUserParam(r *http.Request) (id.UserID, error) {
	user := id.UserID(r.PathValue("userId"))
	if _, _, err := user.ParseAndValidateRelaxed(); err != nil {
		return "", mxhttp.InvalidParam("userId is not a user ID")
	}
	if !s.isLocal(user) {
		return "", mxhttp.InvalidParam("%s is not a user of this server", user)
	}
	return user, nil
}

// userDevice is one device of GET /user/devices.
type userDevice struct {
	DeviceID    id.DeviceID     `json:"device_id"`
	Keys        json.RawMessage `json:"keys"`
	DisplayName *string         `json:"device_display_name,omitempty"`
}

// userDevicesResponse is GET /_matrix/federation/v1/user/devices/{userId}.
type userDevicesResponse struct {
	UserID         id.UserID       `json:"user_id"`
	StreamID       int64           `json:"stream_id"`
	Devices        []userDevice    `json:"devices"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// fedUserDevices is GET /_matrix/federation/v1/user/devices/{userId}: the
// devices of a local user that have keys, with the stream ID of the
// user's last device-list update (what m.device_list_update EDUs continue
// from), and the user's master and self-signing keys.
func (s *Service) fedUserDevices(w http.ResponseWriter, r *http.Request) (any, error) {
	user, err := s.localUserParam(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	// The stream ID is read first: an update racing with this request
	// then carries a later stream ID, and the asking server applies it.
	streamID, err := s.localStreamID(ctx, user)
	if err != nil {
		return nil, err
	}
	q := &queryResponse{
		DeviceKeys:      map[id.UserID]map[id.DeviceID]json.RawMessage{},
		MasterKeys:      map[id.UserID]json.RawMessage{},
		SelfSigningKeys: map[id.UserID]json.RawMessage{},
		UserSigningKeys: map[id.UserID]json.RawMessage{},
	}
	if err := s.queryUser(ctx, "", user, nil, q); err != nil {
		return nil, err
	}
	resp := userDevicesResponse{UserID: user, StreamID: streamID, Devices: []userDevice{},
		MasterKey: q.MasterKeys[user], SelfSigningKey: q.SelfSigningKeys[user]}
	for dev, keys := range q.DeviceKeys[user] {
		d, err := splitUnsigned(dev, keys)
		if err != nil {
			return nil, err
		}
		resp.Devices = append(resp.Devices, d)
	}
	return resp, nil
}

// splitUnsigned moves the display name of a device's keys (unsigned) to
// the device entry of /user/devices.
func splitUnsigned(dev id.DeviceID, keys json.RawMessage) (userDevice, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(keys, &obj); err != nil {
		return userDevice{}, err
	}
	d := userDevice{DeviceID: dev}
	var unsigned struct {
		DisplayName *string `json:"device_display_name"`
	}
	if raw, ok := obj["unsigned"]; ok {
		json.Unmarshal(raw, &unsigned)
		delete(obj, "unsigned")
	}
	d.DisplayName = unsigned.DisplayName
	b, err := json.Marshal(obj)
	d.Keys = b
	return d, err
}

// fedKeysQuery is POST /_matrix/federation/v1/user/keys/query: the keys
// of the local users named (others are left out), as any user of another
// server sees them.
func (s *Service) fedKeysQuery(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, mxhttp.BadJSON("device_keys is required")
	}
	if len(req.DeviceKeys) > maxQueryUsers {
		return nil, mxhttp.TooLarge("at most %d users per query", maxQueryUsers)
	}
	resp := &queryResponse{
		DeviceKeys:      map[id.UserID]map[id.DeviceID]json.RawMessage{},
		MasterKeys:      map[id.UserID]json.RawMessage{},
		SelfSigningKeys: map[id.UserID]json.RawMessage{},
		UserSigningKeys: map[id.UserID]json.RawMessage{},
	}
	for user, want := range req.DeviceKeys {
		if !s.isLocal(user) {
			continue
		}
		if err := s.queryUser(r.Context(), "", user, want, resp); err != nil {
			return nil, err
		}
	}
	return map[string]any{
		"device_keys":       resp.DeviceKeys,
		"master_keys":       resp.MasterKeys,
		"self_signing_keys": resp.SelfSigningKeys,
	}, nil
}

// maxClaimKeys caps the keys one claim may ask for.
const maxClaimKeys = 10000

// claimRequest is the body of a claim, from a client or another server.
type claimRequest struct {
	OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
	Timeout     *int64                               `json:"timeout"`
}

// check refuses a claim without one_time_keys or with too many keys.
func (c *claimRequest) check() error {
	if c.OneTimeKeys == nil {
		return mxhttp.MissingParam("missing one_time_keys")
	}
	n := 0
	for _, devs := range c.OneTimeKeys {
		n += len(devs)
	}
	if n > maxClaimKeys {
		return mxhttp.TooLarge("at most %d keys per claim", maxClaimKeys)
	}
	return nil
}

// claimedKeys is user -> device -> "<algorithm>:<key_id>" -> key.
type claimedKeys map[id.UserID]map[id.DeviceID]map[string]json.RawMessage

// fedKeysClaim is POST /_matrix/federation/v1/user/keys/claim: claims
// one-time keys (or fallback keys) of local devices.
func (s *Service) fedKeysClaim(w http.ResponseWriter, r *http.Request) (any, error) {
	var req claimRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	local := map[id.UserID]map[id.DeviceID]string{}
	for user, devs := range req.OneTimeKeys {
		if s.isLocal(user) {
			local[user] = devs
		}
	}
	claimed, err := s.claimLocal(r.Context(), local)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": claimed}, nil
}

// claimLocal claims a key of each local device asked for: its oldest
// one-time key of the algorithm, or else its fallback key.
func (s *Service) claimLocal(ctx context.Context, want map[id.UserID]map[id.DeviceID]string) (claimedKeys, error) {
	result := claimedKeys{}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		clear(result)
		for user, devices := range want {
			for device, alg := range devices {
				keyID, raw, err := claimOne(ctx, tx, user, device, alg)
				if err != nil {
					return err
				}
				if raw == "" {
					continue
				}
				s.cache.touchAfter(tx, user)
				if result[user] == nil {
					result[user] = map[id.DeviceID]map[string]json.RawMessage{}
				}
				result[user][device] = map[string]json.RawMessage{alg + ":" + keyID: json.RawMessage(raw)}
			}
		}
		return nil
	})
	if err == nil && s.OnKeyCounts != nil {
		for user, devices := range result {
			for device := range devices {
				s.OnKeyCounts(ctx, user, device)
			}
		}
	}
	return result, err
}
