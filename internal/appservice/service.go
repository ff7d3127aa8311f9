package appservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// ChangeReload is the storage change `matrixos appservice reload` records:
// the running node reloads the registration files when it sees it.
const ChangeReload = "appservice.reload"

// Options configure the service.
type Options struct {
	ServerName string
	// Dir holds the registration files (<data>/appservices).
	Dir string
}

// Dir is where a node with data directory dataDir reads registrations.
func Dir(dataDir string) string { return filepath.Join(dataDir, "appservices") }

// Service holds the application services of the node: their
// registrations, the authentication of their as_tokens (identity
// assertion) and the endpoints only they call.
type Service struct {
	Registry *Registry
	// Rooms, when set, is what the service asks about rooms: the
	// per-network directory refuses rooms this node does not know, and
	// rooms an appservice has no part in.
	Rooms *rooms.Engine
	// LocalAliases, when set, lists the room's aliases in this server's
	// alias directory.
	LocalAliases func(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error)

	db   *storage.DB
	log  *slog.Logger
	acc  *accounts.Service
	opts Options

	// client makes the requests to appservices (see outbound.go).
	client *http.Client

	// OnReload runs after each Reload has put registrations in use (the
	// delivery queue starts the workers of new appservices).
	OnReload []func()
	// OnPinged runs after an appservice answered a ping that it asked for
	// (the delivery queue retries it at once instead of waiting out its
	// backoff).
	OnPinged []func(appserviceID string)

	// Limiter, when set, limits the lookups of users and aliases that a
	// request makes the appservices answer (see queries.go).
	Limiter RequesterLimiter
	// misses remembers the appservices' recent "no" to those lookups.
	misses missCache

	reloadMu sync.Mutex // one Reload at a time
}

// New returns the service with no registrations; Reload loads them.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, opts Options) *Service {
	return &Service{
		Registry: NewRegistry(opts.ServerName),
		db:       db,
		log:      log,
		acc:      acc,
		opts:     opts,
		client:   newClient(),
	}
}

// Reload loads the registration files again and puts the ones that load in
// use at once. Each refused file is logged with the reason; the error joins
// them (the node goes on with the registrations that loaded). The sender of
// each new registration is registered if it does not exist yet.
func (s *Service) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	loaded, loadErr := LoadDir(s.opts.Dir)
	// A registration whose sender cannot be registered is refused like a
	// file that does not load; the others are put in use.
	regs := loaded[:0]
	for _, reg := range loaded {
		if err := s.ensureSender(ctx, reg); err != nil {
			loadErr = errors.Join(loadErr, fmt.Errorf("appservice %s: sender %s: %w", reg.ID, reg.SenderLocalpart, err))
			continue
		}
		regs = append(regs, reg)
	}
	for _, err := range unjoin(loadErr) {
		s.log.Error("appservice registration refused", "err", err)
	}
	if err := s.Registry.Set(regs); err != nil {
		return errors.Join(loadErr, err)
	}
	for _, f := range s.OnReload {
		f()
	}
	ids := make([]string, 0, len(regs))
	for _, reg := range regs {
		ids = append(ids, reg.ID)
	}
	s.log.Info("appservices loaded", "dir", s.opts.Dir, "ids", ids, "refused", len(unjoin(loadErr)))
	return loadErr
}

// unjoin splits an errors.Join error into its errors.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ensureSender registers the appservice's sender unless it exists. An
// existing account that the appservice did not register (a human's, or
// another appservice's) refuses the registration: its as_token would act
// as that account.
func (s *Service) ensureSender(ctx context.Context, reg *Registration) error {
	_, err := s.acc.CreateAppserviceUser(ctx, reg.SenderLocalpart, reg.ID)
	if !errors.Is(err, accounts.ErrUserExists) {
		return err
	}
	sender := reg.Sender(s.opts.ServerName)
	owner, ok, err := s.acc.UserAppservice(ctx, sender)
	if err != nil {
		return err
	}
	if ok && owner != reg.ID {
		return fmt.Errorf("%s is an existing account that appservice %s did not register", sender, reg.ID)
	}
	return nil
}

// ApplyChange reloads the registrations for a ChangeReload recorded by the
// admin CLI.
func (s *Service) ApplyChange(ctx context.Context, c storage.Change) error {
	if err := s.Reload(ctx); err != nil {
		s.log.Warn("appservice reload asked by the CLI refused some files", "err", err)
	}
	return nil
}

// RecordReload records a ChangeReload for the running node (the admin
// CLI's `matrixos appservice reload`).
func RecordReload(ctx context.Context, db *storage.DB) error {
	return db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.RecordChange(ctx, ChangeReload, "{}")
		return err
	})
}

// AuthenticateAppservice implements accounts.Appservices: token is an
// appservice's as_token, and the request acts as the user its user_id
// parameter names (the appservice's sender without one), which must be in
// the appservice's user namespaces and registered, and as the device its
// device_id (or MSC3202's org.matrix.msc3202.device_id) names, which must
// be one of that user's.
func (s *Service) AuthenticateAppservice(r *http.Request, token string) (*accounts.Session, bool, error) {
	reg := s.Registry.ByASToken(token)
	if reg == nil {
		return nil, false, nil
	}
	sess, err := s.assertIdentity(r, reg)
	return sess, true, err
}

func (s *Service) assertIdentity(r *http.Request, reg *Registration) (*accounts.Session, error) {
	q := r.URL.Query()
	user := reg.Sender(s.opts.ServerName)
	if asked := q.Get("user_id"); asked != "" {
		user = id.UserID(asked)
	}
	if _, server, err := user.Parse(); err != nil || server != s.opts.ServerName {
		return nil, mxhttp.Forbidden("application service cannot masquerade as %s: not a user of this server", user)
	}
	if !reg.InterestedInUser(user) {
		return nil, mxhttp.Forbidden("application service cannot masquerade as %s: not in its user namespaces", user)
	}
	if owner := s.Registry.ExclusiveUserOwner(user); owner != nil && owner != reg {
		return nil, mxhttp.Forbidden("application service cannot masquerade as %s: another application service holds it exclusively", user)
	}
	u, ok, err := s.acc.GetUser(r.Context(), user)
	if err != nil {
		return nil, err
	}
	if !ok || u.Deactivated {
		return nil, mxhttp.Forbidden("application service has not registered %s", user)
	}
	if u.Locked {
		return nil, mxhttp.UserLocked("%s is locked", user)
	}
	sess := &accounts.Session{
		UserID:       user,
		IsAdmin:      u.IsAdmin,
		Suspended:    u.Suspended,
		ShadowBanned: u.ShadowBanned,
		AppserviceID: reg.ID,
	}
	device := id.DeviceID(q.Get("device_id"))
	if device == "" {
		device = id.DeviceID(q.Get("org.matrix.msc3202.device_id"))
	}
	if device != "" {
		if _, err := s.acc.GetDevice(r.Context(), user, device); err != nil {
			if me, ok := mxhttp.AsError(err); ok && me.Status == http.StatusNotFound {
				return nil, unknownDevice("application service has no device %s for %s", device, user)
			}
			return nil, err
		}
		sess.DeviceID = device
	}
	return sess, nil
}

// unknownDevice answers identity assertion with a device the user does not
// have (spec v1.17).
func unknownDevice(format string, args ...any) *mxhttp.Error {
	return &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN_DEVICE", Message: fmt.Sprintf(format, args...)}
}

// Namespace implements accounts.Appservices: the appservice whose as_token
// is token, and whether user is in its user namespaces and held
// exclusively by no other appservice.
func (s *Service) Namespace(token string, user id.UserID) (string, bool) {
	reg := s.Registry.ByASToken(token)
	if reg == nil {
		return "", false
	}
	owner := s.Registry.ExclusiveUserOwner(user)
	return reg.ID, reg.InterestedInUser(user) && (owner == nil || owner == reg)
}

// ExclusiveUser implements accounts.Appservices.
func (s *Service) ExclusiveUser(user id.UserID) bool {
	return s.Registry.ExclusiveUserOwner(user) != nil
}

// ExclusiveAlias reports whether an appservice other than the session's
// holds alias exclusively: only that appservice may create it.
func (s *Service) ExclusiveAlias(alias id.RoomAlias, sess *accounts.Session) bool {
	owner := s.Registry.ExclusiveAliasOwner(alias)
	return owner != nil && (sess == nil || owner.ID != sess.AppserviceID)
}

// RateLimited reports whether requests of the session are rate limited:
// an appservice's are not, unless its registration says rate_limited: true.
func (s *Service) RateLimited(sess *accounts.Session) bool {
	if sess.AppserviceID == "" {
		return true
	}
	reg := s.Registry.ByID(sess.AppserviceID)
	return reg == nil || reg.RateLimited
}

// requestTimeout bounds each request to an appservice.
const requestTimeout = 10 * time.Second

// ManagesDevices implements accounts.Appservices: the registration of
// appserviceID enables MSC4190 (io.element.msc4190).
func (s *Service) ManagesDevices(appserviceID string) bool {
	reg := s.Registry.ByID(appserviceID)
	return reg != nil && reg.DeviceManagement
}
