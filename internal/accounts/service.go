package accounts

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// Session is an authenticated request's identity.
type Session struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	IsAdmin  bool
	IsGuest  bool
	// Suspended and ShadowBanned are the account's moderation flags, read
	// with the token (the admin guard applies them).
	Suspended    bool
	ShadowBanned bool
	TokenHash    string
	ExpiresTS    int64 // 0: never
	// AppserviceID is the application service whose as_token
	// authenticated the request ("" for a user's own access token).
	AppserviceID string

	cachedAt time.Time
}

// tokenCacheTTL bounds how long a cached token is trusted without looking
// at the database again. The admin CLI's changes reach the node at once
// (see WatchChanges); this bounds the life of anything else, such as a
// row changed by hand.
const tokenCacheTTL = 30 * time.Second

// Hooks lets other packages react to account changes. Each hook is called
// after the change has committed.
type Hooks struct {
	// DeviceDeleted runs after a device and its tokens were removed.
	DeviceDeleted []func(ctx context.Context, user id.UserID, device id.DeviceID)
	// DeviceAdded runs after a device was created.
	DeviceAdded []func(ctx context.Context, user id.UserID, device id.DeviceID)
	// DeviceRenamed runs after a device's display name was set.
	DeviceRenamed []func(ctx context.Context, user id.UserID, device id.DeviceID)
	// Deactivated runs after an account was deactivated (leave rooms, drop keys).
	Deactivated []func(ctx context.Context, user id.UserID)
	// ProfileChanged runs after the display name or avatar changed.
	ProfileChanged []func(ctx context.Context, user id.UserID, displayName, avatarURL string)
}

// Options configure the service.
type Options struct {
	ServerName          string
	OpenRegistration    bool
	RegistrationTokens  bool
	SharedSecret        string
	AccessTokenLifetime time.Duration
	// Reserved are the localparts of the node's own users (the assistant,
	// the moderation, automation and contracts users, the server notices
	// user; node.ReservedLocalparts): ValidateLocalpart refuses them (M_EXCLUSIVE),
	// so registration, the availability check and appservice
	// registration do; CreateUser, the node's own path, does not.
	Reserved []string
}

// Service is the accounts service.
type Service struct {
	// bulkSlot is held by the one CreateUsers call that may run.
	bulkSlot sync.Mutex
	db       *storage.DB
	log      *slog.Logger
	opts     Options
	Hooks    Hooks
	// Limiter, when set, bounds credential guesses by client IP and by
	// account (see allowGuess).
	Limiter Limiter
	// Appservices, when set, authenticates application services' as_tokens
	// and keeps their exclusive user namespaces to them.
	Appservices Appservices
	// OAuth, when set, tells OAuth sessions apart: their refresh tokens
	// are the token endpoint's alone, and their cross-signing resets are
	// approved on the account page (see CrossSigningResetUIA).
	OAuth OAuthSessions

	mu     sync.RWMutex
	tokens map[string]*Session // token hash -> session; a nil entry caches a miss
	// forgotten counts what forget* dropped from tokens: a lookup that
	// raced with a drop does not cache what it read.
	forgotten uint64

	seenMu sync.Mutex
	seen   map[deviceKey]seenMark // when noteSeen last recorded each device

	appliesChanges atomic.Bool                                            // see WatchChanges
	changeHandlers map[string]func(context.Context, storage.Change) error // see HandleChanges

	uia *uiaStore

	// remote looks up other servers' users' profiles (nil while
	// federation is off); see UseFederation.
	remote *remoteProfiles
}

// New returns the accounts service.
func New(db *storage.DB, log *slog.Logger, opts Options) *Service {
	return &Service{db: db, log: log, opts: opts, tokens: map[string]*Session{}, uia: newUIAStore()}
}

// ServerName is the node's server name.
func (s *Service) ServerName() string { return s.opts.ServerName }

// HashToken is how tokens are stored: the hex SHA-256 of the token.
func HashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

const deviceIDChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

func newDeviceID() id.DeviceID { return id.DeviceID(RandomString(deviceIDChars, 10)) }

var localpartRE = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

// ValidateLocalpart checks a localpart for a new user: its grammar, and
// that it is not one the node keeps for its own users (Options.Reserved).
func (s *Service) ValidateLocalpart(localpart string) error {
	if err := s.validateLocalpartGrammar(localpart); err != nil {
		return err
	}
	if slices.Contains(s.opts.Reserved, localpart) {
		return mxhttp.Exclusive("%s is reserved for the node's own user", s.UserID(localpart))
	}
	return nil
}

// validateLocalpartGrammar checks a localpart's characters and length.
func (s *Service) validateLocalpartGrammar(localpart string) error {
	if localpart == "" || !localpartRE.MatchString(localpart) {
		return mxhttp.InvalidUsername("user ID may only contain a-z, 0-9, ., _, =, -, / and +")
	}
	if len("@"+localpart+":"+s.opts.ServerName) > 255 {
		return mxhttp.InvalidUsername("user ID is too long")
	}
	return nil
}

// historicalLocalpartRE is the grammar of historical user IDs' localparts
// (spec, "Historical User IDs"): printable ASCII but ':'.
var historicalLocalpartRE = regexp.MustCompile(`^[!-9;-~]+$`)

// validateHistoricalLocalpart checks the localpart of a user the server
// creates for an appservice (see CreateAppserviceUser): the historical
// grammar, which servers accept, as the senders bridges generate use
// capitals (mautrix writes 32 random letters of both cases).
func (s *Service) validateHistoricalLocalpart(localpart string) error {
	if !historicalLocalpartRE.MatchString(localpart) {
		return mxhttp.InvalidUsername("user ID may only contain printable ASCII characters other than ':'")
	}
	if len("@"+localpart+":"+s.opts.ServerName) > 255 {
		return mxhttp.InvalidUsername("user ID is too long")
	}
	return nil
}

// UserID returns the full user ID for a localpart on this server.
func (s *Service) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, s.opts.ServerName)
}

// ParseLocalUser accepts a localpart or a full user ID of this server.
func (s *Service) ParseLocalUser(user string) (id.UserID, error) {
	if strings.HasPrefix(user, "@") {
		uid := id.UserID(user)
		lp, hs, err := uid.Parse()
		if err != nil || hs != s.opts.ServerName {
			return "", mxhttp.InvalidParam("not a user of this server: %s", user)
		}
		return s.UserID(strings.ToLower(lp)), nil
	}
	return s.UserID(strings.ToLower(user)), nil
}

// User is a stored account.
type User struct {
	ID           id.UserID
	PasswordHash string
	IsAdmin      bool
	Deactivated  bool
	Locked       bool
	Suspended    bool
	ShadowBanned bool
	IsGuest      bool
	CreatedTS    int64
}

// ErrUserExists is returned when registering a taken user ID.
var ErrUserExists = mxhttp.UserInUse("user ID already taken")

// CreateUser stores a new account. An empty password makes an account that
// cannot log in with a password.
func (s *Service) CreateUser(ctx context.Context, localpart, password string, admin bool) (id.UserID, error) {
	return s.createUser(ctx, localpart, password, admin, "")
}

// createUser is CreateUser that, when regToken is not empty, counts a use
// of that registration token in the same transaction.
func (s *Service) createUser(ctx context.Context, localpart, password string, admin bool, regToken string) (id.UserID, error) {
	if err := s.validateLocalpartGrammar(localpart); err != nil {
		return "", err
	}
	uid := s.UserID(localpart)
	hash := ""
	if password != "" {
		var err error
		if hash, err = HashPassword(password); err != nil {
			return "", err
		}
	}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if regToken != "" {
			if err := claimRegistrationToken(ctx, tx, regToken); err != nil {
				return err
			}
		}
		return insertUser(ctx, tx, uid, localpart, hash, admin, "")
	})
	if err != nil {
		return "", err
	}
	s.log.Info("user created", "user_id", uid, "admin", admin)
	return uid, nil
}

// insertUser stores a new account (ErrUserExists when the ID is taken) with
// its localpart as display name; appserviceID names the application
// service it belongs to ("" for none).
func insertUser(ctx context.Context, tx *storage.Tx, uid id.UserID, localpart, passwordHash string, admin bool, appserviceID string) error {
	var n int
	if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM users WHERE user_id = $1", uid).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return ErrUserExists
	}
	_, err := tx.Exec(ctx, "INSERT INTO users (user_id, password_hash, is_admin, created_ts, appservice_id) VALUES ($1, $2, $3, $4, $5)",
		uid, passwordHash, admin, time.Now().UnixMilli(), appserviceID)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO profiles (user_id, field, value) VALUES ($1, 'displayname', $2)", uid, localpart)
	return err
}

// GetUser loads an account; ok is false if it does not exist.
func (s *Service) GetUser(ctx context.Context, uid id.UserID) (*User, bool, error) {
	u := &User{ID: uid}
	err := s.db.QueryRow(ctx, `SELECT password_hash, is_admin, deactivated, locked, suspended, shadow_banned, is_guest, created_ts
		FROM users WHERE user_id = $1`, uid).Scan(&u.PasswordHash, &u.IsAdmin, &u.Deactivated, &u.Locked, &u.Suspended, &u.ShadowBanned, &u.IsGuest, &u.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load user %s: %w", uid, err)
	}
	return u, true, nil
}

// Active reports whether uid has an account that is not deactivated.
func (s *Service) Active(ctx context.Context, uid id.UserID) (bool, error) {
	u, ok, err := s.GetUser(ctx, uid)
	return ok && !u.Deactivated, err
}

// ListUsers returns every account.
func (s *Service) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id, is_admin, deactivated, locked, suspended, shadow_banned, is_guest, created_ts FROM users ORDER BY user_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.IsAdmin, &u.Deactivated, &u.Locked, &u.Suspended, &u.ShadowBanned, &u.IsGuest, &u.CreatedTS); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetPassword replaces a user's password. If keepDevice is non-empty, every
// other device is logged out (all are when it is empty and logoutDevices).
func (s *Service) SetPassword(ctx context.Context, uid id.UserID, password string, logoutDevices bool, keepDevice id.DeviceID) error {
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *storage.Tx, cs *changes) error {
		res, err := tx.Exec(ctx, "UPDATE users SET password_hash = $1 WHERE user_id = $2", hash, uid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return mxhttp.NotFound("no such user")
		}
		if !logoutDevices {
			return nil
		}
		devs, err := deviceIDs(ctx, tx, uid)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if d != keepDevice {
				if err := deleteDevice(ctx, tx, cs, uid, d); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// SetAdmin grants or revokes server admin rights.
func (s *Service) SetAdmin(ctx context.Context, uid id.UserID, admin bool) error {
	return s.setFlag(ctx, uid, "is_admin", admin)
}

// Deactivate disables an account in one transaction: its devices and
// tokens are deleted and its password cleared (and its profile, with
// erase). Then the Deactivated hooks run (leaving rooms and so on): before
// Deactivate returns in the node, as soon as the node sees the change when
// the admin CLI deactivates, or when the node next starts.
func (s *Service) Deactivate(ctx context.Context, uid id.UserID, erase bool) error {
	err := s.write(ctx, func(tx *storage.Tx, cs *changes) error {
		res, err := tx.Exec(ctx, "UPDATE users SET deactivated = TRUE, password_hash = '' WHERE user_id = $1", uid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNoUser
		}
		devs, err := deviceIDs(ctx, tx, uid)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if err := deleteDevice(ctx, tx, cs, uid, d); err != nil {
				return err
			}
		}
		if erase {
			if _, err := tx.Exec(ctx, "DELETE FROM profiles WHERE user_id = $1", uid); err != nil {
				return err
			}
		}
		return cs.record(ctx, tx, changeDeactivated, accountChange{UserID: uid})
	})
	if err != nil {
		return fmt.Errorf("deactivate %s: %w", uid, err)
	}
	s.log.Info("user deactivated", "user_id", uid)
	return nil
}

// Device is a user's device (a login session).
type Device struct {
	UserID      id.UserID   `json:"-"`
	DeviceID    id.DeviceID `json:"device_id"`
	DisplayName *string     `json:"display_name,omitempty"`
	LastSeenIP  string      `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64       `json:"last_seen_ts,omitempty"`
}

// Devices lists a user's devices.
func (s *Service) Devices(ctx context.Context, uid id.UserID) ([]Device, error) {
	rows, err := s.db.Query(ctx, "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices WHERE user_id = $1 ORDER BY device_id", uid)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d := Device{UserID: uid}
		var name sql.NullString
		if err := rows.Scan(&d.DeviceID, &name, &d.LastSeenIP, &d.LastSeenTS); err != nil {
			return nil, err
		}
		if name.Valid {
			d.DisplayName = &name.String
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// GetDevice loads one device.
func (s *Service) GetDevice(ctx context.Context, uid id.UserID, dev id.DeviceID) (*Device, error) {
	d := &Device{UserID: uid, DeviceID: dev}
	var name sql.NullString
	err := s.db.QueryRow(ctx, "SELECT display_name, last_seen_ip, last_seen_ts FROM devices WHERE user_id = $1 AND device_id = $2", uid, dev).
		Scan(&name, &d.LastSeenIP, &d.LastSeenTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mxhttp.NotFound("unknown device")
	}
	if err != nil {
		return nil, err
	}
	if name.Valid {
		d.DisplayName = &name.String
	}
	return d, nil
}

// RenameDevice sets a device's display name, then runs the DeviceRenamed
// hooks.
func (s *Service) RenameDevice(ctx context.Context, uid id.UserID, dev id.DeviceID, name string) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, "UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3", name, uid, dev)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return mxhttp.NotFound("unknown device")
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, h := range s.Hooks.DeviceRenamed {
		h(ctx, uid, dev)
	}
	return nil
}

// DeleteDevice removes a device with its tokens, then the node runs the
// DeviceDeleted hooks (which remove its keys and to-device messages).
func (s *Service) DeleteDevice(ctx context.Context, uid id.UserID, dev id.DeviceID) error {
	err := s.write(ctx, func(tx *storage.Tx, cs *changes) error {
		return deleteDevice(ctx, tx, cs, uid, dev)
	})
	if err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	return nil
}

// deleteDevice deletes a device with its tokens in tx and records the
// change.
func deleteDevice(ctx context.Context, tx *storage.Tx, cs *changes, uid id.UserID, dev id.DeviceID) error {
	rows, err := tx.Query(ctx, "SELECT token_hash FROM access_tokens WHERE user_id = $1 AND device_id = $2", uid, dev)
	if err != nil {
		return err
	}
	var hashes []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return err
		}
		hashes = append(hashes, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, q := range []string{
		"DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2",
		"DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2",
		"DELETE FROM spent_refresh_tokens WHERE user_id = $1 AND device_id = $2",
		"DELETE FROM devices WHERE user_id = $1 AND device_id = $2",
	} {
		if _, err := tx.Exec(ctx, q, uid, dev); err != nil {
			return err
		}
	}
	return cs.record(ctx, tx, changeDeviceDeleted, accountChange{UserID: uid, DeviceID: dev, TokenHashes: hashes})
}

// deviceIDs lists a user's devices in tx.
func deviceIDs(ctx context.Context, tx *storage.Tx, uid id.UserID) ([]id.DeviceID, error) {
	rows, err := tx.Query(ctx, "SELECT device_id FROM devices WHERE user_id = $1", uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []id.DeviceID
	for rows.Next() {
		var d id.DeviceID
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// LoginResult is what a new login session gets.
type LoginResult struct {
	UserID       id.UserID   `json:"user_id"`
	AccessToken  string      `json:"access_token"`
	DeviceID     id.DeviceID `json:"device_id"`
	RefreshToken string      `json:"refresh_token,omitempty"`
	ExpiresInMS  int64       `json:"expires_in_ms,omitempty"`
	HomeServer   string      `json:"home_server,omitempty"`
}

// NewSession creates (or reuses) a device and issues an access token for it.
// With refresh set, a refresh token is issued too and the access token
// expires after the configured lifetime.
func (s *Service) NewSession(ctx context.Context, uid id.UserID, dev id.DeviceID, displayName *string, refresh bool) (*LoginResult, error) {
	return s.newSession(ctx, uid, dev, displayName, refresh, s.opts.AccessTokenLifetime)
}

// newSession is NewSession with the access token's lifetime (0: it never
// expires), which applies when a refresh token is issued.
func (s *Service) newSession(ctx context.Context, uid id.UserID, dev id.DeviceID, displayName *string, refresh bool, lifetime time.Duration) (*LoginResult, error) {
	if dev == "" {
		dev = newDeviceID()
	}
	access := RandomToken("mos_", 32)
	res := &LoginResult{UserID: uid, AccessToken: access, DeviceID: dev, HomeServer: s.opts.ServerName}
	now := time.Now().UnixMilli()
	var expires int64
	if refresh {
		res.RefreshToken = RandomToken("mor_", 32)
		if lifetime > 0 {
			res.ExpiresInMS = lifetime.Milliseconds()
			expires = now + res.ExpiresInMS
		}
	}
	var oldHashes []string
	created := false
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND device_id = $2", uid, dev).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			created = true
			if _, err := tx.Exec(ctx, "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts) VALUES ($1, $2, $3, $4, $4)",
				uid, dev, displayName, now); err != nil {
				return err
			}
		} else {
			// Logging in with an existing device ID replaces its tokens.
			rows, err := tx.Query(ctx, "SELECT token_hash FROM access_tokens WHERE user_id = $1 AND device_id = $2", uid, dev)
			if err != nil {
				return err
			}
			for rows.Next() {
				var h string
				rows.Scan(&h)
				oldHashes = append(oldHashes, h)
			}
			rows.Close()
			if _, err := tx.Exec(ctx, "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2", uid, dev); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2", uid, dev); err != nil {
				return err
			}
			if displayName != nil {
				if _, err := tx.Exec(ctx, "UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3", *displayName, uid, dev); err != nil {
					return err
				}
			}
		}
		if _, err := tx.Exec(ctx, "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts) VALUES ($1, $2, $3, $4, $5)",
			HashToken(access), uid, dev, now, expires); err != nil {
			return err
		}
		if refresh {
			if _, err := tx.Exec(ctx, "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)",
				HashToken(res.RefreshToken), uid, dev, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	s.forgetTokens(append(oldHashes, HashToken(access))...) // the new token may be a cached miss
	if created {
		for _, h := range s.Hooks.DeviceAdded {
			h(ctx, uid, dev)
		}
	}
	return res, nil
}

// Refresh exchanges a refresh token for a new access and refresh token pair.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*LoginResult, error) {
	var uid id.UserID
	var dev id.DeviceID
	unknown := mxhttp.UnknownToken("unknown refresh token")
	// An OAuth session refreshes at the token endpoint, which rotates its
	// tokens with reuse detection; not here.
	if s.OAuth != nil {
		if u, d, found, err := s.TokenDevice(ctx, refreshToken); err != nil {
			return nil, err
		} else if found {
			if viaOAuth, err := s.OAuth.IsOAuthSession(ctx, u, d); err != nil {
				return nil, err
			} else if viaOAuth {
				return nil, unknown
			}
		}
	}
	// Take the token in one transaction so that two concurrent refreshes
	// cannot both succeed.
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		h := HashToken(refreshToken)
		err := tx.QueryRow(ctx, "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1", h).Scan(&uid, &dev)
		if errors.Is(err, sql.ErrNoRows) {
			return unknown
		}
		if err != nil {
			return err
		}

		_, err = tx.Exec(ctx, "DELETE FROM refresh_tokens WHERE token_hash = $1", h)
		return err
	})
	if errors.Is(err, unknown) {
		return nil, unknown
	}
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	return s.NewSession(ctx, uid, dev, nil, true)
}

// Logout revokes one access token (and its device).
func (s *Service) Logout(ctx context.Context, sess *Session) error {
	return s.DeleteDevice(ctx, sess.UserID, sess.DeviceID)
}

// ErrUnknownToken is the error for a token that is not (or no longer) valid.
var ErrUnknownToken = mxhttp.UnknownToken("unknown or expired access token")

// Authenticate resolves an access token to its session, from memory after
// the first lookup.
func (s *Service) Authenticate(ctx context.Context, token string) (*Session, error) {
	if token == "" {
		return nil, mxhttp.MissingToken("missing access token")
	}
	h := HashToken(token)
	s.mu.RLock()
	sess, ok := s.tokens[h]
	forgotten := s.forgotten
	s.mu.RUnlock()
	if ok && sess != nil && time.Since(sess.cachedAt) > tokenCacheTTL {
		ok = false
	}
	if !ok {
		sess = &Session{TokenHash: h, cachedAt: time.Now()}
		var deactivated, locked bool
		err := s.db.QueryRow(ctx, `SELECT t.user_id, t.device_id, t.expires_ts, u.is_admin, u.is_guest, u.suspended, u.shadow_banned, u.deactivated, u.locked
			FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1`, h).
			Scan(&sess.UserID, &sess.DeviceID, &sess.ExpiresTS, &sess.IsAdmin, &sess.IsGuest, &sess.Suspended, &sess.ShadowBanned, &deactivated, &locked)
		if errors.Is(err, sql.ErrNoRows) || deactivated {
			sess = nil
		} else if err != nil {
			return nil, fmt.Errorf("look up access token: %w", err)
		} else if locked {
			return nil, mxhttp.UserLocked("this account has been locked").With("soft_logout", true)
		}
		s.cache(h, sess, forgotten)
	}
	if sess == nil {
		return nil, ErrUnknownToken
	}
	if sess.ExpiresTS != 0 && time.Now().UnixMilli() > sess.ExpiresTS {
		return nil, mxhttp.UnknownToken("access token expired").With("soft_logout", true)
	}
	return sess, nil
}

// cache keeps a looked-up session (nil: a miss), unless a session was
// forgotten since the lookup began: the row it read may be older than the
// change that made the node forget.
func (s *Service) cache(h string, sess *Session, forgotten uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forgotten != forgotten {
		return
	}
	if len(s.tokens) > 200000 {
		clear(s.tokens) // bound memory under a flood of bad tokens
	}
	s.tokens[h] = sess
}

// forgetTokens drops cached sessions by token hash.
func (s *Service) forgetTokens(hashes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgotten++
	for _, h := range hashes {
		delete(s.tokens, h)
	}
}

// forgetUser drops the cached sessions of uid so its flags are read again.
func (s *Service) forgetUser(uid id.UserID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgotten++
	for h, sess := range s.tokens {
		if sess != nil && sess.UserID == uid {
			delete(s.tokens, h)
		}
	}
}
