package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// LoginTypeAppservice is the login and registration type of application
// services: the as_token is the request's access token.
const LoginTypeAppservice = "m.login.application_service"

// Appservices is what accounts asks about application services.
// internal/appservice implements it and the node sets Service.Appservices.
type Appservices interface {
	// AuthenticateAppservice authenticates a request whose access token
	// is an appservice's as_token, as the user and device its identity
	// assertion names (?user_id=, device_id). ok is false when token is
	// no appservice's.
	AuthenticateAppservice(r *http.Request, token string) (sess *Session, ok bool, err error)
	// Namespace returns the ID of the appservice whose as_token is token
	// ("" when none) and whether user is in its user namespaces.
	Namespace(token string, user id.UserID) (appserviceID string, inNamespace bool)
	// ExclusiveUser reports whether an appservice holds user
	// exclusively: nobody else may register it.
	ExclusiveUser(user id.UserID) bool
	// QueryUser asks the appservices whose namespaces hold user, which
	// does not exist, whether it should; true when one created it. The
	// error is a requester past its limit of such lookups.
	QueryUser(ctx context.Context, user id.UserID) (bool, error)
	// ManagesDevices reports whether the appservice appserviceID manages
	// its users' devices itself (MSC4190): it creates them with PUT
	// /devices/{deviceId} and deletes them without UIA.
	ManagesDevices(appserviceID string) bool
}

// managesDevices reports whether sess is an appservice's that manages its
// users' devices (MSC4190).
func (s *Service) managesDevices(sess *Session) bool {
	return sess.AppserviceID != "" && s.Appservices != nil && s.Appservices.ManagesDevices(sess.AppserviceID)
}

// createDevice makes a device without an access token for an appservice
// user (MSC4190) unless it exists; created tells which. The DeviceAdded
// hooks run for a new device.
func (s *Service) createDevice(ctx context.Context, uid id.UserID, dev id.DeviceID, displayName *string) (created bool, err error) {
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM devices WHERE user_id = $1 AND device_id = $2", uid, dev).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		now := time.Now().UnixMilli()
		created = true
		_, err := tx.Exec(ctx, "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts) VALUES ($1, $2, $3, $4, $4)",
			uid, dev, displayName, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("create device %s of %s: %w", dev, uid, err)
	}
	if created {
		for _, h := range s.Hooks.DeviceAdded {
			h(ctx, uid, dev)
		}
	}
	return created, nil
}

// AuthenticateRequest authenticates a request's access token: a user's
// (Authenticate) or an application service's as_token with its identity
// assertion.
func (s *Service) AuthenticateRequest(r *http.Request) (*Session, error) {
	tok := mxhttp.AccessToken(r)
	if s.Appservices != nil && tok != "" {
		if sess, ok, err := s.Appservices.AuthenticateAppservice(r, tok); ok {
			return sess, err
		}
	}
	sess, err := s.Authenticate(r.Context(), tok)
	if err == nil {
		s.noteSeen(r, sess)
	}
	return sess, err
}

// checkNotExclusive refuses a user an application service holds
// exclusively, for everyone but that appservice.
func (s *Service) checkNotExclusive(uid id.UserID) error {
	if s.Appservices != nil && s.Appservices.ExclusiveUser(uid) {
		return mxhttp.Exclusive("%s is reserved by an application service", uid)
	}
	return nil
}

// appserviceUser checks that the request's access token is an
// appservice's as_token whose user namespaces hold uid, and returns the
// appservice's ID.
func (s *Service) appserviceUser(r *http.Request, uid id.UserID) (string, error) {
	tok := mxhttp.AccessToken(r)
	if tok == "" {
		return "", mxhttp.MissingToken("missing access token: %s needs the appservice's as_token", LoginTypeAppservice)
	}
	if s.Appservices == nil {
		return "", mxhttp.UnknownToken("unknown application service token")
	}
	asID, inNamespace := s.Appservices.Namespace(tok, uid)
	if asID == "" {
		return "", mxhttp.UnknownToken("unknown application service token")
	}
	if !inNamespace {
		return "", mxhttp.Exclusive("%s is not in the user namespaces of application service %s", uid, asID)
	}
	return asID, nil
}

// loginAppservice answers m.login.application_service: the as_token logs
// in an existing user of the appservice's namespaces.
func (s *Service) loginAppservice(r *http.Request, req *loginRequest) (id.UserID, error) {
	uid, err := s.identifierUser(&AuthDict{User: req.User, Identifier: req.Identifier})
	if err != nil {
		return "", err
	}
	if _, err := s.appserviceUser(r, uid); err != nil {
		return "", err
	}
	u, ok, err := s.GetUser(r.Context(), uid)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", mxhttp.Forbidden("%s is not registered", uid)
	}
	if u.Deactivated {
		return "", mxhttp.UserDeactivated("this account has been deactivated")
	}
	if u.Locked {
		return "", mxhttp.UserLocked("this account has been locked")
	}
	return uid, nil
}

// registerAppservice answers POST /register with m.login.application_service:
// no UIA, whatever the registration settings, for users in the
// appservice's namespaces only.
func (s *Service) registerAppservice(r *http.Request, req *registerRequest) (any, error) {
	localpart := strings.ToLower(req.Username)
	if err := s.ValidateLocalpart(localpart); err != nil {
		return nil, err
	}
	uid := s.UserID(localpart)
	asID, err := s.appserviceUser(r, uid)
	if err != nil {
		return nil, err
	}
	if _, err := s.CreateAppserviceUser(r.Context(), localpart, asID); err != nil {
		return nil, err
	}
	if req.InhibitLogin {
		return map[string]any{"user_id": uid, "home_server": s.opts.ServerName}, nil
	}
	return s.NewSession(r.Context(), uid, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
}

// CreateAppserviceUser stores a new account, without a password, that
// belongs to the application service appserviceID. The localpart may be
// a historical one (capitals included), as an appservice's sender from
// its registration file may be; registration through POST /register
// checks the current grammar first.
func (s *Service) CreateAppserviceUser(ctx context.Context, localpart, appserviceID string) (id.UserID, error) {
	uid := s.UserID(localpart)
	if err := s.validateHistoricalLocalpart(localpart); err != nil {
		return "", err
	}
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		return insertUser(ctx, tx, uid, localpart, "", false, appserviceID)
	})
	if err != nil {
		return "", fmt.Errorf("create %s for appservice %s: %w", uid, appserviceID, err)
	}
	s.log.Info("user created", "user_id", uid, "appservice", appserviceID)
	return uid, nil
}

// UserAppservice returns the appservice that registered uid ("" for an
// account registered otherwise: a human's); ok is false when uid has no
// account.
func (s *Service) UserAppservice(ctx context.Context, uid id.UserID) (appserviceID string, ok bool, err error) {
	err = s.db.QueryRow(ctx, `SELECT appservice_id FROM users WHERE user_id = $1`, uid).Scan(&appserviceID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("load user %s: %w", uid, err)
	}
	return appserviceID, true, nil
}

// UsersNotOf returns the accounts that match reports true for and that the
// appservice appserviceID did not register, by user ID.
func (s *Service) UsersNotOf(ctx context.Context, appserviceID string, match func(id.UserID) bool) ([]id.UserID, error) {
	rows, err := s.db.Query(ctx, `SELECT user_id FROM users WHERE appservice_id <> $1 ORDER BY user_id`, appserviceID)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []id.UserID
	for rows.Next() {
		var uid id.UserID
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		if match(uid) {
			out = append(out, uid)
		}
	}
	return out, rows.Err()
}
