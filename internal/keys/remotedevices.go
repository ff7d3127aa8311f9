package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Remote device lists. This server keeps the devices and cross-signing
// keys of remote users who share a room with one of its users, so that
// /keys/query answers from here and /sync's device_lists.changed names
// them when they change. A cached list is current while it is not stale:
// it comes from the user's server's GET /user/devices (with its
// stream_id), and each m.device_list_update EDU that continues it
// (prev_id naming the stream_id held) is applied; a gap marks it stale and
// fetches it again. The cache of a user who no longer shares a room with
// anyone here is dropped, as their server stops sending updates.

const (
	// resyncTimeout bounds one GET /user/devices.
	resyncTimeout = 30 * time.Second
	// resyncParallelism bounds the device lists fetched at once.
	resyncParallelism = 8
)

// sharedWithLocal reports whether a remote user is joined to or invited
// in a room where a user of this server is joined or invited.
func (s *Service) sharedWithLocal(ctx context.Context, user id.UserID) bool {
	for roomID, m := range s.rooms.Memberships(user) {
		if !active(m) {
			continue
		}
		for u, um := range s.rooms.Members(ctx, roomID) {
			if active(um) && s.isLocal(u) {
				return true
			}
		}
	}
	return false
}

// remoteList is the state of a cached remote device list.
type remoteList struct {
	streamID int64
	stale    bool
}

// remoteListOf reads the cached list's state; ok is false when none is
// cached.
func remoteListOf(ctx context.Context, tx *storage.Tx, user id.UserID) (l remoteList, ok bool, err error) {
	err = tx.QueryRow(ctx, "SELECT stream_id, stale FROM e2e_remote_device_lists WHERE user_id = $1", user).Scan(&l.streamID, &l.stale)
	if errors.Is(err, sql.ErrNoRows) {
		return l, false, nil
	}
	return l, err == nil, err
}

// cachedKeys adds a remote user's keys to resp from the cache when the
// cached list is current, and reports whether it did.
func (s *Service) cachedKeys(ctx context.Context, user id.UserID, want []id.DeviceID, resp *queryResponse) (bool, error) {
	if !s.isCached(user) || !s.sharedWithLocal(ctx, user) {
		return false, nil
	}
	var stale bool
	err := s.db.QueryRow(ctx, "SELECT stale FROM e2e_remote_device_lists WHERE user_id = $1", user).Scan(&stale)
	if errors.Is(err, sql.ErrNoRows) || err == nil && stale {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load remote device list: %w", err)
	}
	wanted := map[id.DeviceID]bool{}
	for _, d := range want {
		wanted[d] = true
	}
	rows, err := s.db.Query(ctx, "SELECT device_id, key_json FROM e2e_remote_device_keys WHERE user_id = $1", user)
	if err != nil {
		return false, fmt.Errorf("load remote device keys: %w", err)
	}
	defer rows.Close()
	devices := map[id.DeviceID]json.RawMessage{}
	for rows.Next() {
		var dev id.DeviceID
		var raw string
		if err := rows.Scan(&dev, &raw); err != nil {
			return false, err
		}
		if len(want) == 0 || wanted[dev] {
			devices[dev] = json.RawMessage(raw)
		}
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	rows.Close()
	resp.DeviceKeys[user] = devices
	cs, err := s.db.Query(ctx, "SELECT key_type, key_json FROM e2e_remote_cross_signing_keys WHERE user_id = $1", user)
	if err != nil {
		return false, fmt.Errorf("load remote cross-signing keys: %w", err)
	}
	defer cs.Close()
	for cs.Next() {
		var typ, raw string
		if err := cs.Scan(&typ, &raw); err != nil {
			return false, err
		}
		switch typ {
		case keyMaster:
			resp.MasterKeys[user] = json.RawMessage(raw)
		case keySelfSigning:
			resp.SelfSigningKeys[user] = json.RawMessage(raw)
		}
	}
	return true, cs.Err()
}

// isCached reports whether a remote user's device list is cached.
func (s *Service) isCached(user id.UserID) bool {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	return s.remoteCached[user]
}

// setCached notes (once tx commits) whether a remote user's list is
// cached.
func (s *Service) setCached(tx *storage.Tx, user id.UserID, cached bool) {
	tx.AfterCommit(func() {
		s.remoteMu.Lock()
		defer s.remoteMu.Unlock()
		if cached {
			s.remoteCached[user] = true
		} else {
			delete(s.remoteCached, user)
		}
	})
}

// loadRemoteCache reads which remote users' lists are cached.
func (s *Service) loadRemoteCache(ctx context.Context) error {
	rows, err := s.db.Query(ctx, "SELECT user_id FROM e2e_remote_device_lists")
	if err != nil {
		return fmt.Errorf("load remote device lists: %w", err)
	}
	defer rows.Close()
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	s.remoteCached = map[id.UserID]bool{}
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return err
		}
		s.remoteCached[u] = true
	}
	return rows.Err()
}

// resyncSoon fetches a remote user's device list in the background. A
// call while a fetch for the user runs makes it fetch once more when done,
// as an update may have come after the running fetch's answer.
func (s *Service) resyncSoon(user id.UserID) {
	s.remoteMu.Lock()
	if _, running := s.resyncing[user]; running {
		s.resyncing[user] = true
		s.remoteMu.Unlock()
		return
	}
	s.resyncing[user] = false
	s.remoteMu.Unlock()
	s.background.Go(func() {
		for s.resyncOnce(user) {
		}
	})
}

// resyncAgain reports whether the user's device list must be fetched once
// more after the fetch running now.
func (s *Service) resyncAgain(user id.UserID) bool {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	return s.resyncing[user]
}

// resyncOnce fetches a user's device list (waiting for a free slot) and
// reports whether it must be fetched again.
func (s *Service) resyncOnce(user id.UserID) (again bool) {
	defer func() {
		s.remoteMu.Lock()
		again = s.resyncing[user] && s.ctx.Err() == nil
		if again {
			s.resyncing[user] = false
		} else {
			delete(s.resyncing, user)
		}
		s.remoteMu.Unlock()
	}()
	select {
	case s.resyncSlots <- struct{}{}:
		defer func() { <-s.resyncSlots }()
	case <-s.ctx.Done():
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, resyncTimeout)
	defer cancel()
	if err := s.Resync(ctx, user); err != nil {
		s.log.Info("fetch remote device list", "user_id", user, "err", err)
		s.noteFailedResync(s.ctx, user)
	}
	return false
}

// noteFailedResync tells the local users sharing a room with a remote
// user that the user's devices changed when the list could not be fetched:
// their /keys/query then asks the user's server itself.
func (s *Service) noteFailedResync(ctx context.Context, user id.UserID) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error { return s.recordChange(ctx, tx, user, "") })
	if err != nil {
		s.log.Warn("record device list change", "user_id", user, "err", err)
		return
	}
	s.wakeSharers(ctx, user)
}

// Close stops the device-list fetches running in the background and waits
// for them to end.
func (s *Service) Close() {
	s.cancel()
	s.background.Wait()
}

// Resync replaces the cached device list of a remote user with what the
// user's server answers to GET /user/devices, and tells the local users
// who share a room with them.
func (s *Service) Resync(ctx context.Context, user id.UserID) error {
	_, server, err := user.Parse()
	if err != nil {
		return err
	}
	if s.fed == nil || server == s.accounts.ServerName() {
		return fmt.Errorf("%s is not a remote user", user)
	}
	var got userDevicesResponse
	if err := s.fed.MakeRequest(ctx, server, true, http.MethodGet, federation.URLPath{"v1", "user", "devices", user}, nil, &got); err != nil {
		return fmt.Errorf("GET /user/devices: %w", err)
	}
	if got.UserID != user {
		return fmt.Errorf("GET /user/devices answered for %q", got.UserID)
	}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := deleteRemoteList(ctx, tx, user); err != nil {
			return err
		}
		for _, d := range got.Devices {
			if !deviceKeysOf(d.Keys, user, d.DeviceID) {
				continue
			}
			if err := storeRemoteDevice(ctx, tx, user, d.DeviceID, d.Keys, d.DisplayName); err != nil {
				return err
			}
		}
		for typ, raw := range map[string]json.RawMessage{keyMaster: got.MasterKey, keySelfSigning: got.SelfSigningKey} {
			if err := storeRemoteCrossSigningKey(ctx, tx, user, typ, raw); err != nil {
				return err
			}
		}
		// An update that came while this fetch ran may be missing from its
		// answer: the list is then kept stale until the fetch after.
		if _, err := tx.Exec(ctx, "INSERT INTO e2e_remote_device_lists (user_id, stream_id, stale) VALUES ($1, $2, $3)",
			user, got.StreamID, s.resyncAgain(user)); err != nil {
			return err
		}
		s.setCached(tx, user, true)
		return s.recordChange(ctx, tx, user, "")
	})
	if err != nil {
		return fmt.Errorf("store remote device list: %w", err)
	}
	s.wakeSharers(ctx, user)
	return nil
}

// storeRemoteDevice stores a remote device's keys as /keys/query serves
// them: with the device's display name, when its server gave one, in
// unsigned.device_display_name.
func storeRemoteDevice(ctx context.Context, tx *storage.Tx, user id.UserID, dev id.DeviceID, keys json.RawMessage, displayName *string) error {
	var unsigned map[string]any
	if displayName != nil {
		unsigned = map[string]any{"device_display_name": *displayName}
	}
	stored, err := decorate(string(keys), nil, unsigned)
	if err != nil {
		return fmt.Errorf("keys of %s's device %s: %w", user, dev, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO e2e_remote_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, user, dev, compact(stored))
	return err
}

// nonEmpty returns a pointer to s, or nil when s is empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// storeRemoteCrossSigningKey stores a remote user's cross-signing key of
// type typ, when raw is one of the user's keys with that usage.
func storeRemoteCrossSigningKey(ctx context.Context, tx *storage.Tx, user id.UserID, typ string, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if _, err := parseCSKey(raw, typ, user); err != nil {
		return nil // not a key of the user: left out
	}
	_, err := tx.Exec(ctx, `INSERT INTO e2e_remote_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json`, user, typ, compact(raw))
	return err
}

// deviceListUpdate is the content of an m.device_list_update EDU.
type deviceListUpdate struct {
	UserID            id.UserID       `json:"user_id"`
	DeviceID          id.DeviceID     `json:"device_id"`
	DeviceDisplayName string          `json:"device_display_name,omitempty"`
	StreamID          int64           `json:"stream_id"`
	PrevID            []int64         `json:"prev_id"`
	Deleted           bool            `json:"deleted,omitempty"`
	Keys              json.RawMessage `json:"keys,omitempty"`
}

// remoteUserOf checks that user is a user of origin, the server that sent
// an EDU about them.
func remoteUserOf(user id.UserID, origin string) error {
	_, server, err := user.Parse()
	if err != nil {
		return mxhttp.BadJSON("user_id is not a user ID")
	}
	if server != origin {
		return mxhttp.Forbidden("%s is not a user of %s", user, origin)
	}
	return nil
}

// HandleDeviceListUpdate handles an m.device_list_update EDU: the update
// is applied to the cached list when it continues it, else the list is
// fetched again; either way the local users sharing a room with the user
// see the user in device_lists.changed (once the list is fetched, when it
// is, or the fetch failed). An update of a user no local user is known to
// share a room with, from a server of a room whose state is partial here,
// is recorded for those who turn out to share one once the state is
// complete. An update of a device without
// keys changes no list a client sees: it only moves the cached list's
// stream on.
func (s *Service) HandleDeviceListUpdate(ctx context.Context, origin string, content json.RawMessage) error {
	var u deviceListUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return mxhttp.BadJSON("m.device_list_update: %v", err)
	}
	if err := remoteUserOf(u.UserID, origin); err != nil {
		return err
	}
	if u.DeviceID == "" {
		return mxhttp.BadJSON("m.device_list_update without device_id")
	}
	if !s.sharedWithLocal(ctx, u.UserID) {
		if !s.rooms.InPartialRoomWith(ctx, origin) {
			return nil // nobody here cares: the list is not tracked
		}
		// The user may be among the members a room whose state is partial
		// lacks: the change is recorded, the list not tracked, and the
		// local users who share a room with the user once the state is
		// complete see the user in device_lists.changed then (not before:
		// who is in the room is not known yet).
		if err := s.db.Write(ctx, func(tx *storage.Tx) error { return s.recordChange(ctx, tx, u.UserID, "") }); err != nil {
			return fmt.Errorf("m.device_list_update: %w", err)
		}
		return nil
	}
	// A device without keys (announced as its user joined a room) is not
	// in any list a client sees: its update only moves the stream on.
	keyless := !u.Deleted && len(u.Keys) == 0
	resync := false
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		resync = false
		l, cached, err := remoteListOf(ctx, tx, u.UserID)
		if err != nil {
			return err
		}
		switch {
		case !cached && keyless:
			return nil // the fetch the first update with keys starts covers it
		case !cached:
			// Not fetched yet, or being fetched: fetch it (again).
			resync = true
		case !l.stale && u.StreamID == l.streamID:
			return nil // already applied
		case !l.stale && continues(u.PrevID, l.streamID) && keyless:
			_, err := tx.Exec(ctx, "UPDATE e2e_remote_device_lists SET stream_id = $2 WHERE user_id = $1", u.UserID, u.StreamID)
			return err
		case !l.stale && continues(u.PrevID, l.streamID) && (u.Deleted || deviceKeysOf(u.Keys, u.UserID, u.DeviceID)):
			if err := applyDeviceUpdate(ctx, tx, &u); err != nil {
				return err
			}
		default:
			resync = true
			_, err := tx.Exec(ctx, "UPDATE e2e_remote_device_lists SET stale = TRUE WHERE user_id = $1", u.UserID)
			return err
		}
		if resync {
			// The fetch tells the local users once it holds the list, so
			// that they are told once, and read the list it fetched.
			return nil
		}
		return s.recordChange(ctx, tx, u.UserID, "")
	})
	if err != nil {
		return fmt.Errorf("m.device_list_update: %w", err)
	}
	s.wakeSharers(ctx, u.UserID)
	if resync {
		s.resyncSoon(u.UserID)
	}
	return nil
}

// continues reports whether an update whose prev_id is prev follows the
// update with stream ID held directly.
func continues(prev []int64, held int64) bool {
	if len(prev) == 0 {
		return false
	}
	for _, p := range prev {
		if p != held {
			return false
		}
	}
	return true
}

func applyDeviceUpdate(ctx context.Context, tx *storage.Tx, u *deviceListUpdate) error {
	if u.Deleted {
		if _, err := tx.Exec(ctx, "DELETE FROM e2e_remote_device_keys WHERE user_id = $1 AND device_id = $2", u.UserID, u.DeviceID); err != nil {
			return err
		}
	} else if err := storeRemoteDevice(ctx, tx, u.UserID, u.DeviceID, u.Keys, nonEmpty(u.DeviceDisplayName)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "UPDATE e2e_remote_device_lists SET stream_id = $2 WHERE user_id = $1", u.UserID, u.StreamID)
	return err
}

// signingKeyUpdate is the content of an m.signing_key_update EDU.
type signingKeyUpdate struct {
	UserID         id.UserID       `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// HandleSigningKeyUpdate handles an m.signing_key_update EDU: the
// cross-signing keys given replace the cached ones, and the local users
// sharing a room with the user see the user in device_lists.changed.
func (s *Service) HandleSigningKeyUpdate(ctx context.Context, origin string, content json.RawMessage) error {
	var u signingKeyUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return mxhttp.BadJSON("m.signing_key_update: %v", err)
	}
	if err := remoteUserOf(u.UserID, origin); err != nil {
		return err
	}
	if !s.sharedWithLocal(ctx, u.UserID) {
		return nil
	}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, cached, err := remoteListOf(ctx, tx, u.UserID)
		if err != nil {
			return err
		}
		if cached {
			for typ, raw := range map[string]json.RawMessage{keyMaster: u.MasterKey, keySelfSigning: u.SelfSigningKey} {
				if err := storeRemoteCrossSigningKey(ctx, tx, u.UserID, typ, raw); err != nil {
					return err
				}
			}
		}
		return s.recordChange(ctx, tx, u.UserID, "")
	})
	if err != nil {
		return fmt.Errorf("m.signing_key_update: %w", err)
	}
	s.wakeSharers(ctx, u.UserID)
	return nil
}

// untrackOnLeave drops the cached device lists of remote users who no
// longer share a room with anyone here after a membership change: their
// servers stop sending updates, so the cache would go out of date.
func (s *Service) untrackOnLeave(ev *rooms.Event, info *rooms.RoomInfo) {
	if ev.Type != "m.room.member" || ev.StateKey == nil || active(ev.Membership()) {
		return
	}
	target := id.UserID(*ev.StateKey)
	var candidates []id.UserID
	if s.isLocal(target) {
		for u := range info.Members {
			if !s.isLocal(u) && s.isCached(u) {
				candidates = append(candidates, u)
			}
		}
	} else if s.isCached(target) {
		candidates = append(candidates, target)
	}
	if len(candidates) == 0 {
		return
	}
	s.background.Go(func() {
		ctx := s.ctx
		for _, u := range candidates {
			if s.sharedWithLocal(ctx, u) {
				continue
			}
			if err := s.dropRemoteList(ctx, u); err != nil {
				s.log.Warn("drop remote device list", "user_id", u, "err", err)
			}
		}
	})
}

// deleteRemoteList deletes what tx holds of a remote user's device list:
// device keys, cross-signing keys and the list's own row.
func deleteRemoteList(ctx context.Context, tx *storage.Tx, user id.UserID) error {
	for _, q := range []string{
		"DELETE FROM e2e_remote_device_keys WHERE user_id = $1",
		"DELETE FROM e2e_remote_cross_signing_keys WHERE user_id = $1",
		"DELETE FROM e2e_remote_device_lists WHERE user_id = $1",
	} {
		if _, err := tx.Exec(ctx, q, user); err != nil {
			return fmt.Errorf("forget the device list of %s: %w", user, err)
		}
	}
	return nil
}

// dropRemoteList forgets a remote user's cached device list.
func (s *Service) dropRemoteList(ctx context.Context, user id.UserID) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := deleteRemoteList(ctx, tx, user); err != nil {
			return err
		}
		s.setCached(tx, user, false)
		return nil
	})
}
