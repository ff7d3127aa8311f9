package accountdata

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// Service stores account data and serves its endpoints.
type Service struct {
	db       *storage.DB
	log      *slog.Logger
	accounts *accounts.Service
	notifier *sync.Notifier

	// floor is the stream position when the service started; every
	// write since has its position in last, by user, so /sync can skip
	// the query for a user with nothing new.
	floor  int64
	lastMu gosync.Mutex
	last   map[id.UserID]int64
	// ignored caches each user's ignored users, which every /sync reads,
	// with the position of the user's last write they hold (see
	// IgnoredUsers). Guarded by lastMu.
	ignored map[id.UserID]ignoredList
	// ignoreLists counts the changes to anyone's ignored users (see
	// IgnoreListsVersion).
	ignoreLists atomic.Uint64

	// Virtual answers GET requests for global types that another service
	// keeps (m.push_rules), keyed by type. Set it before serving.
	Virtual map[string]func(user id.UserID) json.RawMessage
}

// New returns the service; it wakes users' long-polls through notifier.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, notifier *sync.Notifier) *Service {
	return &Service{
		db: db, log: log, accounts: acc, notifier: notifier,
		floor: db.Visible(), last: map[id.UserID]int64{},
		Virtual: map[string]func(id.UserID) json.RawMessage{},
	}
}

// deletedContent is the content of deleted account data (MSC3391): the
// row stays, with a new stream position, so an incremental /sync tells
// clients of the deletion by an event with this empty content, while GET
// answers 404 and an initial /sync leaves it out.
const deletedContent = "{}"

// isDeleted reports whether stored content is the empty object, which
// MSC3391 defines as deleted account data. Update stores content compacted,
// so the comparison is of strings, as in Fill's queries.
func isDeleted(stored string) bool {
	return stored == deletedContent
}

// Get returns the content of the user's account data of this type, global
// when roomID is empty. ok is false when it was never set or was deleted.
func (s *Service) Get(ctx context.Context, user id.UserID, roomID id.RoomID, typ string) (content json.RawMessage, ok bool, err error) {
	var raw string
	err = s.db.QueryRow(ctx, "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
		user, roomID, typ).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load account data %s: %w", typ, err)
	}
	if isDeleted(raw) {
		return nil, false, nil
	}
	return json.RawMessage(raw), true, nil
}

// ignoredList is a user's ignored users as read after the user's account
// data write at position pos.
type ignoredList struct {
	pos   int64
	users map[id.UserID]bool
}

// ignoredUserListType is the global account data that lists the users a
// user ignores.
const ignoredUserListType = "m.ignored_user_list"

// maxCachedIgnored bounds the ignored-users cache; it starts afresh when
// full.
const maxCachedIgnored = 100_000

// IgnoredUsers returns the users that user ignores: the keys of
// ignored_users in their global m.ignored_user_list account data. The
// result is shared: callers must not modify it.
func (s *Service) IgnoredUsers(ctx context.Context, user id.UserID) (map[id.UserID]bool, error) {
	// The user's last write is noted before it commits: a list read once
	// that write is visible holds it, and a later write moves pos on.
	s.lastMu.Lock()
	pos, written := s.last[user]
	if !written {
		pos = s.floor
	}
	cached, ok := s.ignored[user]
	s.lastMu.Unlock()
	if ok && cached.pos == pos {
		return cached.users, nil
	}
	visible := pos <= s.db.Visible()
	users, err := s.readIgnored(ctx, user)
	if err != nil || !visible {
		return users, err
	}
	s.lastMu.Lock()
	if s.ignored == nil || len(s.ignored) >= maxCachedIgnored {
		s.ignored = map[id.UserID]ignoredList{}
	}
	s.ignored[user] = ignoredList{pos: pos, users: users}
	s.lastMu.Unlock()
	return users, nil
}

// IgnoreListsVersion returns a number that changes whenever any user's
// ignored users may have changed (a write of their m.ignored_user_list, a
// deactivation), by the time the write that changed them returns: what
// was derived from IgnoredUsers under one version holds while the version
// stays the same.
func (s *Service) IgnoreListsVersion() uint64 { return s.ignoreLists.Load() }

// ignoreListChanged moves IgnoreListsVersion on once a write of a user's
// ignored users has committed.
func (s *Service) ignoreListChanged() { s.ignoreLists.Add(1) }

func (s *Service) readIgnored(ctx context.Context, user id.UserID) (map[id.UserID]bool, error) {
	raw, ok, err := s.Get(ctx, user, "", ignoredUserListType)
	if err != nil || !ok {
		return nil, err
	}
	var list struct {
		IgnoredUsers map[id.UserID]json.RawMessage `json:"ignored_users"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil // not the spec's shape: nobody is ignored
	}
	out := make(map[id.UserID]bool, len(list.IgnoredUsers))
	for u := range list.IgnoredUsers {
		out[u] = true
	}
	return out, nil
}

// DirectRooms returns the rooms that user's m.direct account data lists as
// direct chats (the values of its user ID to room IDs map).
func (s *Service) DirectRooms(ctx context.Context, user id.UserID) (map[id.RoomID]bool, error) {
	raw, ok, err := s.Get(ctx, user, "", "m.direct")
	if err != nil || !ok {
		return nil, err
	}
	var direct map[id.UserID][]id.RoomID
	if err := json.Unmarshal(raw, &direct); err != nil {
		return nil, nil // not the spec's shape: no direct chats
	}
	out := map[id.RoomID]bool{}
	for _, rooms := range direct {
		for _, r := range rooms {
			out[r] = true
		}
	}
	return out, nil
}

// RoomTags returns the tags (the keys of m.tag's tags) of each of the
// user's tagged rooms.
func (s *Service) RoomTags(ctx context.Context, user id.UserID) (map[id.RoomID][]string, error) {
	rows, err := s.load(ctx, "WHERE user_id = $1 AND type = 'm.tag' AND room_id <> ''", user)
	if err != nil {
		return nil, err
	}
	out := map[id.RoomID][]string{}
	for _, r := range rows {
		var c struct {
			Tags map[string]json.RawMessage `json:"tags"`
		}
		if json.Unmarshal([]byte(r.content), &c) != nil {
			continue // not the spec's shape: no tags
		}
		for tag := range c.Tags {
			out[r.room] = append(out[r.room], tag)
		}
	}
	return out, nil
}

// Set stores content (a JSON object) as the user's account data of this
// type, global when roomID is empty, and wakes the user's long-polls. Unlike
// the HTTP API it accepts server-controlled types such as m.fully_read.
func (s *Service) Set(ctx context.Context, user id.UserID, roomID id.RoomID, typ string, content json.RawMessage) error {
	_, err := s.Update(ctx, user, roomID, typ, func(json.RawMessage) (json.RawMessage, bool, error) {
		return content, true, nil
	})
	return err
}

// Delete deletes the user's account data of this type, global when roomID
// is empty (MSC3391). Deleting what is unset or already deleted changes
// nothing.
func (s *Service) Delete(ctx context.Context, user id.UserID, roomID id.RoomID, typ string) error {
	return s.Set(ctx, user, roomID, typ, json.RawMessage(deletedContent))
}

// Update replaces the user's account data of this type with what fn makes
// of the current content (nil when unset or deleted), in one write: fn runs
// inside the write transaction and must be quick. When fn reports no change
// nothing is written. Content {} deletes the data (MSC3391), and writing
// it over unset or deleted data is no change. Update reports whether it
// wrote.
func (s *Service) Update(ctx context.Context, user id.UserID, roomID id.RoomID, typ string,
	fn func(old json.RawMessage) (updated json.RawMessage, changed bool, err error)) (bool, error) {
	changed := false
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var raw string
		var old json.RawMessage
		err := tx.QueryRow(ctx, "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
			user, roomID, typ).Scan(&raw)
		switch {
		case err == nil && !isDeleted(raw):
			old = json.RawMessage(raw)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("load account data %s: %w", typ, err)
		}
		updated, ok, err := fn(old)
		if err != nil || !ok {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, updated); err != nil {
			return fmt.Errorf("account data %s: %w", typ, err)
		}
		if old == nil && buf.String() == deletedContent {
			return nil // deleting what is not there
		}
		pos := tx.NextPos()
		if _, err := tx.Exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos`,
			user, roomID, typ, buf.String(), pos); err != nil {
			return fmt.Errorf("store account data %s: %w", typ, err)
		}
		// Noted before the commit makes pos visible to /sync.
		s.lastMu.Lock()
		s.last[user] = pos
		s.lastMu.Unlock()
		if roomID == "" && typ == ignoredUserListType {
			// On the writer right after the commit, before the write
			// is visible or returns: a push roster made before it
			// holds the old list under the old version.
			tx.AfterCommit(s.ignoreListChanged)
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if changed {
		s.notifier.Wake(user)
	}
	return changed, nil
}

// PurgeRoom drops every user's account data for a purged room (a
// rooms.Engine.OnPurge hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if _, err := tx.Exec(ctx, "DELETE FROM account_data WHERE room_id = $1", roomID); err != nil {
		return fmt.Errorf("purge room account data: %w", err)
	}
	return nil
}

// LocalNotificationSettingsPrefix starts the type of the account data
// where a client keeps one device's notification settings (MSC3890,
// remotely silencing notifications), the device ID following it.
const LocalNotificationSettingsPrefix = "org.matrix.msc3890.local_notification_settings."

// OnDeviceDeleted deletes the deleted device's local notification settings
// (MSC3890), as the MSC asks, so no stale entry of a device that is gone
// stays in the user's account data (an accounts.Hooks.DeviceDeleted hook).
func (s *Service) OnDeviceDeleted(ctx context.Context, user id.UserID, device id.DeviceID) {
	if err := s.Delete(ctx, user, "", LocalNotificationSettingsPrefix+string(device)); err != nil {
		s.log.Error("delete local notification settings of deleted device", "user_id", user, "device_id", device, "err", err)
	}
}

// OnDeactivated deletes a deactivated user's account data, global and per
// room (an accounts.Hooks.Deactivated hook): it can hold private data such
// as encrypted secrets and the list of direct chats.
func (s *Service) OnDeactivated(ctx context.Context, user id.UserID) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM account_data WHERE user_id = $1", user); err != nil {
			return err
		}
		// Noted before the commit, as a write does: an IgnoredUsers that
		// read the list before the delete then caches it under a position
		// that is no longer the user's last, so it is read again.
		s.lastMu.Lock()
		s.last[user] = tx.NextPos()
		s.lastMu.Unlock()
		return nil
	})
	if err != nil {
		s.log.Error("delete account data of deactivated user", "user_id", user, "err", err)
	}
	s.lastMu.Lock()
	delete(s.ignored, user)
	s.lastMu.Unlock()
	s.ignoreListChanged()
}

// latest returns a position at or after the user's newest account data.
func (s *Service) latest(user id.UserID) int64 {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	return max(s.floor, s.last[user])
}
