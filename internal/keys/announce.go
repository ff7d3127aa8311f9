package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Announcing local changes. Each change of a local user's device is an
// update of the user's device-list stream: its stream ID is a fresh stream
// position, its prev_id the stream ID of the user's update before, and it
// goes as an m.device_list_update EDU to every server with a user who
// shares a room with the user (after the change commits). A server that
// missed one sees the gap in prev_id and fetches the list again through
// GET /user/devices, which answers the stream ID of the last update.
// Changes of cross-signing keys go as m.signing_key_update.

// deviceChange is a device-list update to announce once its write commits.
type deviceChange struct {
	user     id.UserID
	device   id.DeviceID
	streamID int64
	prevID   int64
}

// localStreamID returns the stream ID of a local user's last device-list
// update (0 when there was none).
func (s *Service) localStreamID(ctx context.Context, user id.UserID) (int64, error) {
	var streamID int64
	err := s.db.QueryRow(ctx, "SELECT stream_id FROM e2e_device_list_streams WHERE user_id = $1", user).Scan(&streamID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return streamID, err
}

// recordDeviceChange records that a local user's device changed (for the
// users sharing a room with them, as recordChange) and adds the update of
// the user's device-list stream to changes, for announce.
func (s *Service) recordDeviceChange(ctx context.Context, tx *storage.Tx, user id.UserID, device id.DeviceID, changes *[]deviceChange) error {
	if err := s.recordChange(ctx, tx, user, ""); err != nil {
		return err
	}
	var prev int64
	err := tx.QueryRow(ctx, "SELECT stream_id FROM e2e_device_list_streams WHERE user_id = $1", user).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	streamID := tx.NextPos()
	if _, err := tx.Exec(ctx, `INSERT INTO e2e_device_list_streams (user_id, stream_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id`, user, streamID); err != nil {
		return err
	}
	*changes = append(*changes, deviceChange{user: user, device: device, streamID: streamID, prevID: prev})
	return nil
}

// remoteServers lists the other servers with a user who is joined to or
// invited in a room where user is.
func (s *Service) remoteServers(ctx context.Context, user id.UserID) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range s.sharers(ctx, user) {
		_, server, err := u.Parse()
		if err != nil || server == s.accounts.ServerName() || seen[server] {
			continue
		}
		seen[server] = true
		out = append(out, server)
	}
	slices.Sort(out)
	return out
}

// announceDevices sends committed device-list updates to the servers
// that share a room with their users.
func (s *Service) announceDevices(ctx context.Context, changes []deviceChange) {
	if s.edus == nil {
		return
	}
	for _, c := range changes {
		servers := s.remoteServers(ctx, c.user)
		if len(servers) == 0 {
			continue
		}
		content, err := s.deviceUpdateContent(ctx, c)
		if err != nil {
			s.log.Warn("build m.device_list_update", "user_id", c.user, "device_id", c.device, "err", err)
			continue
		}
		s.sendEDU(ctx, servers, "m.device_list_update", content)
	}
}

// deviceUpdateContent builds the m.device_list_update of a change: the
// device's keys as they are now, or deleted when it has none.
func (s *Service) deviceUpdateContent(ctx context.Context, c deviceChange) (*deviceListUpdate, error) {
	u := &deviceListUpdate{UserID: c.user, DeviceID: c.device, StreamID: c.streamID, PrevID: []int64{}}
	if c.prevID > 0 {
		u.PrevID = []int64{c.prevID}
	}
	q := newQueryResponse()
	if err := s.queryUser(ctx, "", c.user, []id.DeviceID{c.device}, q); err != nil {
		return nil, err
	}
	raw, ok := q.DeviceKeys[c.user][c.device]
	if !ok {
		u.Deleted = true
		return u, nil
	}
	d, err := splitUnsigned(c.device, raw)
	if err != nil {
		return nil, err
	}
	u.Keys = d.Keys
	if d.DisplayName != nil {
		u.DeviceDisplayName = *d.DisplayName
	}
	return u, nil
}

// announceSigningKeys sends a local user's cross-signing keys as they are
// now to the servers that share a room with them.
func (s *Service) announceSigningKeys(ctx context.Context, user id.UserID) {
	if s.edus == nil {
		return
	}
	servers := s.remoteServers(ctx, user)
	if len(servers) == 0 {
		return
	}
	q := newQueryResponse()
	if err := s.queryUser(ctx, "", user, nil, q); err != nil {
		s.log.Warn("build m.signing_key_update", "user_id", user, "err", err)
		return
	}
	s.sendEDU(ctx, servers, "m.signing_key_update", signingKeyUpdate{
		UserID: user, MasterKey: q.MasterKeys[user], SelfSigningKey: q.SelfSigningKeys[user]})
}

// sendEDU queues an EDU for each server; a failure is logged, as the
// change itself has committed (and a later update shows the gap).
func (s *Service) sendEDU(ctx context.Context, servers []string, eduType string, content any) {
	for _, server := range servers {
		if err := s.edus.SendEDU(ctx, server, eduType, content); err != nil {
			s.log.Warn("queue EDU", "type", eduType, "destination", server, "err", err)
		}
	}
}

// newQueryResponse is an empty /keys/query response.
func newQueryResponse() *queryResponse {
	return &queryResponse{
		Failures:        map[string]any{},
		DeviceKeys:      map[id.UserID]map[id.DeviceID]json.RawMessage{},
		MasterKeys:      map[id.UserID]json.RawMessage{},
		SelfSigningKeys: map[id.UserID]json.RawMessage{},
		UserSigningKeys: map[id.UserID]json.RawMessage{},
	}
}
