package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	gosync "sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// Limits bound what one client can store or send.
type Limits struct {
	// MaxOneTimeKeysPerUpload caps the one-time keys in one /keys/upload.
	MaxOneTimeKeysPerUpload int
	// MaxOneTimeKeysPerDevice caps the unclaimed one-time keys a device
	// may hold.
	MaxOneTimeKeysPerDevice int
	// MaxToDeviceBytes caps one to-device message's content.
	MaxToDeviceBytes int
	// MaxToDeviceRequestBytes caps a /sendToDevice request body.
	MaxToDeviceRequestBytes int64
	// MaxToDeviceMessages caps the messages of one /sendToDevice request.
	MaxToDeviceMessages int
	// MaxToDeviceQueue caps the undelivered messages queued for a device.
	MaxToDeviceQueue int
	// ToDevicePerSync is the most to-device messages one /sync returns.
	ToDevicePerSync int
	// MaxBackupRequestBytes caps a /room_keys/keys upload.
	MaxBackupRequestBytes int64
}

// DefaultLimits are the limits New uses.
var DefaultLimits = Limits{
	MaxOneTimeKeysPerUpload: 1000,
	MaxOneTimeKeysPerDevice: 10000,
	MaxToDeviceBytes:        65536,
	MaxToDeviceRequestBytes: 8 << 20,
	MaxToDeviceMessages:     10000,
	MaxToDeviceQueue:        50000,
	ToDevicePerSync:         100,
	MaxBackupRequestBytes:   16 << 20,
}

// Service serves the end-to-end encryption endpoints and contributes the
// encryption parts of /sync.
type Service struct {
	db       *storage.DB
	log      *slog.Logger
	accounts *accounts.Service
	rooms    *rooms.Engine
	notifier *sync.Notifier
	// Limits may be changed before the service handles requests.
	Limits Limits

	// Hooks for appservices (MSC4203, MSC3202), nil when unset; set them
	// before the service handles requests. RouteToDevice runs inside the
	// write that queues a to-device message for a local device, and when
	// it reports that an appservice holds the user exclusively, the
	// message goes to the appservice only, not to the device's inbox.
	// OnDeviceListChange runs inside the write that records a change of
	// user's devices or cross-signing keys (viewer, when set, is the only
	// user it is for). OnKeyCounts runs after one-time or fallback keys of
	// a local device were uploaded or claimed.
	RouteToDevice      func(ctx context.Context, tx *storage.Tx, sender id.UserID, evType string, user id.UserID, device id.DeviceID, content json.RawMessage) (exclusive bool, err error)
	OnDeviceListChange func(ctx context.Context, tx *storage.Tx, user, viewer id.UserID) error
	OnKeyCounts        func(ctx context.Context, user id.UserID, device id.DeviceID)

	cache syncCache
	// lastDeviceChange is the position of the newest device list change.
	lastDeviceChange atomic.Int64
	// deviceLog is the newest device-list changes (see deviceChanges).
	deviceLog *storage.PosLog[listChange]

	// fed and edus reach other servers (nil while federation is off).
	fed  FederationClient
	edus EDUSender
	// remoteMu guards remoteCached (the remote users whose device list is
	// cached) and resyncing (those whose list is being fetched, true when
	// it must be fetched once more after).
	remoteMu     gosync.Mutex
	remoteCached map[id.UserID]bool
	resyncing    map[id.UserID]bool
	resyncSlots  chan struct{}
	// catchUpMu serializes the catch-ups of partial-state rooms
	// (partialstate.go).
	catchUpMu gosync.Mutex
	// background runs device-list fetches; ctx ends them at Close.
	background gosync.WaitGroup
	ctx        context.Context
	cancel     context.CancelFunc
}

// New returns the keys service. notifier wakes long-polling /sync
// requests when to-device messages or device-list changes arrive.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine, notifier *sync.Notifier) *Service {
	s := &Service{db: db, log: log, accounts: acc, rooms: eng, notifier: notifier, Limits: DefaultLimits,
		remoteCached: map[id.UserID]bool{}, resyncing: map[id.UserID]bool{}, resyncSlots: make(chan struct{}, resyncParallelism),
		deviceLog: storage.NewPosLog[listChange](maxDeviceLog)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	eng.OnEvent = append(eng.OnEvent, s.untrackOnLeave, s.announceOnJoin)
	eng.OnStateComplete = append(eng.OnStateComplete, s.onStateComplete)
	return s
}

// Routes registers the endpoints on mux.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	mux.HandleFunc("POST "+v3+"/keys/upload", s.accounts.Auth(s.postUpload))
	mux.HandleFunc("POST "+v3+"/keys/query", s.accounts.Auth(s.postQuery))
	mux.HandleFunc("POST "+v3+"/keys/claim", s.accounts.Auth(s.postClaim))
	mux.HandleFunc("GET "+v3+"/keys/changes", s.accounts.Auth(s.getChanges))
	mux.HandleFunc("POST "+v3+"/keys/device_signing/upload", mxhttp.Handle(s.postDeviceSigning))
	mux.HandleFunc("POST "+v3+"/keys/signatures/upload", s.accounts.Auth(s.postSignatures))
	// Clients released before cross-signing reached a stable spec version
	// (Element Web's legacy crypto among them) still use the unstable paths.
	const unstable = "/_matrix/client/unstable"
	mux.HandleFunc("POST "+unstable+"/keys/device_signing/upload", mxhttp.Handle(s.postDeviceSigning))
	mux.HandleFunc("POST "+unstable+"/keys/signatures/upload", s.accounts.Auth(s.postSignatures))
	mux.HandleFunc("PUT "+v3+"/sendToDevice/{eventType}/{txnId}", s.accounts.Auth(s.putSendToDevice))

	mux.HandleFunc("POST "+v3+"/room_keys/version", s.accounts.Auth(s.postBackupVersion))
	mux.HandleFunc("GET "+v3+"/room_keys/version", s.accounts.Auth(s.getBackupVersion))
	mux.HandleFunc("GET "+v3+"/room_keys/version/{version}", s.accounts.Auth(s.getBackupVersion))
	mux.HandleFunc("PUT "+v3+"/room_keys/version/{version}", s.accounts.Auth(s.putBackupVersion))
	mux.HandleFunc("DELETE "+v3+"/room_keys/version/{version}", s.accounts.Auth(s.deleteBackupVersion))
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		mux.HandleFunc("GET "+v3+p, s.accounts.Auth(s.getBackupKeys))
		mux.HandleFunc("PUT "+v3+p, s.accounts.Auth(s.putBackupKeys))
		mux.HandleFunc("DELETE "+v3+p, s.accounts.Auth(s.deleteBackupKeys))
	}
}

// OnDeviceDeleted removes a deleted device's keys, signatures and queued
// to-device messages, and tells the users who share a room with its owner.
func (s *Service) OnDeviceDeleted(ctx context.Context, user id.UserID, device id.DeviceID) {
	hadKeys := false
	var changes []deviceChange
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		changes = changes[:0]
		res, err := tx.Exec(ctx, "DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2", user, device)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		hadKeys = n > 0
		for _, q := range []string{
			"DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2",
			"DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2",
			"DELETE FROM e2e_signatures WHERE target_user = $1 AND target_key = $2",
			"DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2",
			"DELETE FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2",
			"DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2",
		} {
			if _, err := tx.Exec(ctx, q, user, device); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM e2e_signatures WHERE signer_user = $1 AND signer_key_id = $2", user, "ed25519:"+string(device)); err != nil {
			return err
		}
		s.cache.touchAfter(tx, user)
		if !hadKeys {
			return nil // nobody could have known the device
		}
		return s.recordDeviceChange(ctx, tx, user, device, &changes)
	})
	if err != nil {
		s.log.Error("remove keys of deleted device", "user_id", user, "device_id", device, "err", err)
		return
	}
	if hadKeys {
		s.wakeSharers(ctx, user)
		s.announceDevices(ctx, changes)
	}
}

// OnDeviceRenamed tells the servers of the users who share a room with a
// device's owner that the device's display name changed (an update of the
// owner's device-list stream), and those users, when the device has keys
// (a device without keys is in no list their clients see).
func (s *Service) OnDeviceRenamed(ctx context.Context, user id.UserID, device id.DeviceID) {
	hasKeys := false
	var changes []deviceChange
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		changes = changes[:0]
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2", user, device).Scan(&n); err != nil {
			return err
		}
		if hasKeys = n > 0; !hasKeys {
			return s.recordStreamUpdate(ctx, tx, user, device, &changes)
		}
		return s.recordDeviceChange(ctx, tx, user, device, &changes)
	})
	if err != nil {
		s.log.Error("record renamed device", "user_id", user, "device_id", device, "err", err)
		return
	}
	if hasKeys {
		s.wakeSharers(ctx, user)
	}
	s.announceDevices(ctx, changes)
}

// OnDeactivated removes everything a deactivated account had stored here:
// cross-signing keys, signatures it made and key backups. (Its devices'
// keys went with OnDeviceDeleted.)
func (s *Service) OnDeactivated(ctx context.Context, user id.UserID) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		s.cache.touchAfter(tx, user)
		for _, q := range []string{
			"DELETE FROM e2e_device_keys WHERE user_id = $1",
			"DELETE FROM e2e_one_time_keys WHERE user_id = $1",
			"DELETE FROM e2e_fallback_keys WHERE user_id = $1",
			"DELETE FROM e2e_cross_signing_keys WHERE user_id = $1",
			"DELETE FROM e2e_signatures WHERE target_user = $1 OR signer_user = $1",
			"DELETE FROM to_device_messages WHERE user_id = $1",
			"DELETE FROM to_device_deliveries WHERE user_id = $1",
			"DELETE FROM to_device_txns WHERE user_id = $1",
			"DELETE FROM key_backup_keys WHERE user_id = $1",
			"DELETE FROM key_backup_versions WHERE user_id = $1",
		} {
			if _, err := tx.Exec(ctx, q, user); err != nil {
				return err
			}
		}
		return s.recordChange(ctx, tx, user, "")
	})
	if err != nil {
		s.log.Error("remove keys of deactivated account", "user_id", user, "err", err)
		return
	}
	s.wakeSharers(ctx, user)
}

// recordChange notes that user's devices or cross-signing keys changed,
// for every user who shares a room with them (viewer "") or for viewer
// alone.
func (s *Service) recordChange(ctx context.Context, tx *storage.Tx, user id.UserID, viewer id.UserID) error {
	pos := tx.NextPos()
	_, err := tx.Exec(ctx, "INSERT INTO e2e_device_changes (pos, user_id, viewer) VALUES ($1, $2, $3)", pos, user, viewer)
	if err != nil {
		return err
	}
	tx.AfterCommit(func() {
		s.deviceLog.Add(pos, listChange{user: user, viewer: viewer})
		s.lastDeviceChange.Store(max(s.lastDeviceChange.Load(), pos))
	})
	if s.OnDeviceListChange != nil {
		return s.OnDeviceListChange(ctx, tx, user, viewer)
	}
	return nil
}

// Load reads what the service keeps in memory; call it before serving.
func (s *Service) Load(ctx context.Context) error {
	// Changes committed from now on reach the log (recordChange); older
	// windows read the database.
	s.deviceLog.Start(s.db.Visible())
	var pos sql.NullInt64
	if err := s.db.QueryRow(ctx, "SELECT MAX(pos) FROM e2e_device_changes").Scan(&pos); err != nil {
		return fmt.Errorf("load device list changes: %w", err)
	}
	s.lastDeviceChange.Store(pos.Int64)
	return s.loadRemoteCache(ctx)
}

// active reports whether a membership counts as sharing the room: joined
// or invited.
func active(membership string) bool { return membership == "join" || membership == "invite" }

// activeRooms returns the rooms where user is joined or invited.
func (s *Service) activeRooms(user id.UserID) map[id.RoomID]bool {
	out := map[id.RoomID]bool{}
	for r, m := range s.rooms.Memberships(user) {
		if active(m) {
			out[r] = true
		}
	}
	return out
}

// activeMembers calls fn for each user joined to or invited in the room.
// A room this node is not in (a user's invite received over federation)
// has no members known here.
func (s *Service) activeMembers(ctx context.Context, roomID id.RoomID, fn func(id.UserID)) error {
	state, err := s.rooms.CurrentState(ctx, roomID)
	if errors.Is(err, rooms.ErrNoRoom) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, ev := range state {
		if ev.Type == "m.room.member" && ev.StateKey != nil && active(ev.Membership()) {
			fn(id.UserID(*ev.StateKey))
		}
	}
	return nil
}

// sharers lists user and everyone who shares a room with them.
func (s *Service) sharers(ctx context.Context, user id.UserID) []id.UserID {
	seen := map[id.UserID]bool{user: true}
	out := []id.UserID{user}
	for r := range s.activeRooms(user) {
		_ = s.activeMembers(ctx, r, func(u id.UserID) {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		})
	}
	return out
}

// wakeSharers wakes the long-polls of user and everyone sharing a room
// with them.
func (s *Service) wakeSharers(ctx context.Context, user id.UserID) {
	if s.notifier != nil {
		s.notifier.Wake(s.sharers(ctx, user)...)
	}
}

func (s *Service) wake(users ...id.UserID) {
	if s.notifier != nil {
		s.notifier.Wake(users...)
	}
}
