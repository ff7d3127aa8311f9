package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
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
	return s.recordStreamUpdate(ctx, tx, user, device, changes)
}

// recordStreamUpdate adds an update of a local user's device-list stream
// for a device to changes, for announce, without telling the users who
// share a room with them (a change of a device without keys).
func (s *Service) recordStreamUpdate(ctx context.Context, tx *storage.Tx, user id.UserID, device id.DeviceID, changes *[]deviceChange) error {
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
// invited in a room where user is, and, for a room whose state is still
// partial (its other members not known yet), the servers its send_join
// answer named.
func (s *Service) remoteServers(ctx context.Context, user id.UserID) []string {
	seen := map[string]bool{s.accounts.ServerName(): true}
	var out []string
	add := func(server string) {
		if !seen[server] {
			seen[server] = true
			out = append(out, server)
		}
	}
	for _, u := range s.sharers(ctx, user) {
		if _, server, err := u.Parse(); err == nil {
			add(server)
		}
	}
	for roomID := range s.activeRooms(user) {
		if s.rooms.HasPartialState(ctx, roomID) {
			for _, server := range s.rooms.JoinedServers(ctx, roomID) {
				add(server)
			}
		}
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
	// Which servers each update goes to is recorded for the user's
	// partial-state rooms before it is queued (partialstate.go).
	sent := make([][]string, len(changes))
	var notes []partialNote
	for i, c := range changes {
		sent[i] = s.remoteServers(ctx, c.user)
		notes = s.partialNotes(ctx, notes, c, sent[i])
	}
	if err := s.notePartialSent(ctx, notes); err != nil {
		s.log.Warn("record device-list updates", "err", err)
	}
	for i, c := range changes {
		servers := sent[i]
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
		return u, s.keylessDevice(ctx, u)
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

// keylessDevice fills the update of a device without keys: its display
// name when the device exists (it has not uploaded keys yet), else the
// update says it was deleted.
func (s *Service) keylessDevice(ctx context.Context, u *deviceListUpdate) error {
	d, err := s.accounts.GetDevice(ctx, u.UserID, u.DeviceID)
	if e, ok := mxhttp.AsError(err); ok && e.Status == http.StatusNotFound {
		u.Deleted = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("load device %s: %w", u.DeviceID, err)
	}
	if d.DisplayName != nil {
		u.DeviceDisplayName = *d.DisplayName
	}
	return nil
}

// announceOnJoin is an OnEvent hook. When a local user joins a room where
// another server has a member but shares no other room with the user, that
// server is not receiving the user's device-list updates yet: each of the
// user's devices becomes a new update of their stream, sent to every
// server sharing a room with them (those already up to date apply it as
// the next update), and the users sharing a room with them see them in
// device_lists.changed. A user none of whose devices has keys has no list
// a client sees, and nothing is announced (the other server fetches the
// list when it needs it; Complement's partial-state residents refuse EDUs
// they do not expect).
func (s *Service) announceOnJoin(ev *rooms.Event, info *rooms.RoomInfo) {
	if s.edus == nil || ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() != "join" {
		return
	}
	user := id.UserID(*ev.StateKey)
	if !s.isLocal(user) || prevMembership(ev) == "join" || len(s.serversNewTo(user, ev.RoomID, info.JoinedServers())) == 0 {
		return
	}
	s.background.Go(func() {
		if err := s.announceAllDevices(s.ctx, user); err != nil {
			s.log.Warn("announce devices on join", "user_id", user, "room_id", ev.RoomID, "err", err)
		}
	})
}

// serversNewTo returns the servers of servers, other than this one, that
// have no member joined to a room of user's other than roomID.
func (s *Service) serversNewTo(user id.UserID, roomID id.RoomID, servers []string) []string {
	known := map[string]bool{s.accounts.ServerName(): true}
	for r, m := range s.rooms.Memberships(user) {
		if r == roomID || m != "join" {
			continue
		}
		for _, server := range s.rooms.JoinedServers(s.ctx, r) {
			known[server] = true
		}
	}
	var out []string
	for _, server := range servers {
		if !known[server] {
			out = append(out, server)
		}
	}
	return out
}

// announceAllDevices records an update of each of a local user's devices
// and announces them, when one of them has keys.
func (s *Service) announceAllDevices(ctx context.Context, user id.UserID) error {
	var keyed int
	err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM e2e_device_keys WHERE user_id = $1", user).Scan(&keyed)
	if err != nil {
		return fmt.Errorf("count device keys: %w", err)
	}
	if keyed == 0 {
		return nil
	}
	devices, err := s.accounts.Devices(ctx, user)
	if err != nil {
		return err
	}
	if len(devices) == 0 {
		return nil
	}
	var changes []deviceChange
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		changes = changes[:0]
		for _, d := range devices {
			if err := s.recordDeviceChange(ctx, tx, user, d.DeviceID, &changes); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record device-list updates: %w", err)
	}
	s.wakeSharers(ctx, user)
	s.announceDevices(ctx, changes)
	return nil
}

// prevMembership is the membership a member event replaced, from its
// unsigned prev_content ("" when it replaced none).
func prevMembership(ev *rooms.Event) string {
	var u struct {
		PrevContent struct {
			Membership string `json:"membership"`
		} `json:"prev_content"`
	}
	if ev.PDU == nil || len(ev.PDU.Unsigned) == 0 {
		return ""
	}
	json.Unmarshal(ev.PDU.Unsigned, &u)
	return u.PrevContent.Membership
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
