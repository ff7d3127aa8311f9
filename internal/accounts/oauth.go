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

// This file holds what the OAuth 2.0 server (package oauth) asks of
// accounts: its login and registration pages check credentials through
// the same code and rate limits as /login and /register, and its sessions
// are devices with the tokens of NewSession.

// AllowGuess counts one credential check made outside this package (a
// user code typed on the device page) against the login rate limit of
// the client IP and, when user is not empty, of that account.
func (s *Service) AllowGuess(r *http.Request, user id.UserID) error {
	return s.allowGuess(r, user)
}

// CheckLogin checks a password for user (a localpart or a user ID of this
// server) as POST /login does, rate limit included, and returns the user.
func (s *Service) CheckLogin(r *http.Request, user, password string) (id.UserID, error) {
	uid, err := s.identifierUser(&AuthDict{User: strings.TrimSpace(user)})
	if err != nil {
		return "", err
	}
	if _, err := s.checkPassword(r, uid, password); err != nil {
		return "", err
	}
	return uid, nil
}

// RegistrationMode says who may create an account.
type RegistrationMode int

// The registration modes, from the open_registration and
// registration_tokens settings.
const (
	RegistrationClosed RegistrationMode = iota
	RegistrationOpen
	RegistrationByToken
)

// RegistrationMode reports how accounts may be created on this server.
func (s *Service) RegistrationMode() RegistrationMode {
	switch {
	case s.opts.OpenRegistration:
		return RegistrationOpen
	case s.opts.RegistrationTokens:
		return RegistrationByToken
	}
	return RegistrationClosed
}

// RegisterUser creates an account as POST /register does, under the same
// settings: anyone may while registration is open; with registration
// tokens, regToken must be one that is still valid (checking it counts
// as a guess, as on /register); otherwise nobody may.
func (s *Service) RegisterUser(r *http.Request, localpart, password, regToken string) (id.UserID, error) {
	mode := s.RegistrationMode()
	if mode == RegistrationClosed {
		return "", mxhttp.Forbidden("registration is disabled on this server")
	}
	localpart = strings.ToLower(strings.TrimSpace(localpart))
	if err := s.ValidateLocalpart(localpart); err != nil {
		return "", err
	}
	if err := s.checkNotExclusive(s.UserID(localpart)); err != nil {
		return "", err
	}
	if password == "" {
		return "", mxhttp.MissingParam("missing password")
	}
	if err := CheckPasswordLength(password); err != nil {
		return "", err
	}
	if mode != RegistrationByToken {
		regToken = ""
	} else {
		if regToken == "" {
			return "", mxhttp.Unauthorized("a registration token is required")
		}
		if err := s.allowGuess(r, ""); err != nil {
			return "", err
		}
	}
	return s.createUser(r.Context(), localpart, password, false, regToken)
}

// ErrRefreshTokenReused answers a refresh token that was already
// exchanged: RotateRefreshToken has ended its session.
var ErrRefreshTokenReused = errors.New("refresh token reused: session ended")

// spentRefreshLifetime is how long RotateRefreshToken remembers an
// exchanged refresh token.
const spentRefreshLifetime = 30 * 24 * time.Hour

// NewRefreshableSession is NewSession with a refresh token and an access
// token that expires after lifetime, whatever access_token_lifetime says.
func (s *Service) NewRefreshableSession(ctx context.Context, uid id.UserID, dev id.DeviceID, displayName *string, lifetime time.Duration) (*LoginResult, error) {
	return s.newSession(ctx, uid, dev, displayName, true, lifetime)
}

// RotateRefreshToken exchanges a refresh token for a new access and
// refresh token pair of the same device, as Refresh does (the new access
// token expiring after lifetime), and remembers the old one: a second
// exchange of it (a copy in the wrong hands) ends the whole session,
// deleting the device, and answers ErrRefreshTokenReused. An unknown
// token is ErrUnknownToken's kind of error (M_UNKNOWN_TOKEN).
func (s *Service) RotateRefreshToken(ctx context.Context, refreshToken string, lifetime time.Duration) (*LoginResult, error) {
	h := HashToken(refreshToken)
	var uid id.UserID
	var dev id.DeviceID
	reused := false
	unknown := mxhttp.UnknownToken("unknown refresh token")
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		now := time.Now()
		err := tx.QueryRow(ctx, "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1", h).Scan(&uid, &dev)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRow(ctx, "SELECT user_id, device_id FROM spent_refresh_tokens WHERE token_hash = $1", h).Scan(&uid, &dev)
			if errors.Is(err, sql.ErrNoRows) {
				return unknown
			}
			reused = err == nil
			return err
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM refresh_tokens WHERE token_hash = $1", h); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM spent_refresh_tokens WHERE spent_ts < $1", now.Add(-spentRefreshLifetime).UnixMilli()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO spent_refresh_tokens (token_hash, user_id, device_id, spent_ts) VALUES ($1, $2, $3, $4)",
			h, uid, dev, now.UnixMilli())
		return err
	})
	if errors.Is(err, unknown) {
		return nil, unknown
	}
	if err != nil {
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}
	if reused {
		s.log.Warn("refresh token used twice: ending the session", "user_id", uid, "device_id", dev)
		if err := s.DeleteDevice(ctx, uid, dev); err != nil {
			return nil, err
		}
		return nil, ErrRefreshTokenReused
	}
	return s.newSession(ctx, uid, dev, nil, true, lifetime)
}

// TokenDevice finds the device an access or refresh token belongs to;
// found is false when it is neither. An expired access token still names
// its device.
func (s *Service) TokenDevice(ctx context.Context, token string) (uid id.UserID, dev id.DeviceID, found bool, err error) {
	h := HashToken(token)
	for _, q := range []string{
		"SELECT user_id, device_id FROM access_tokens WHERE token_hash = $1",
		"SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1",
	} {
		err := s.db.QueryRow(ctx, q, h).Scan(&uid, &dev)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", "", false, fmt.Errorf("look up token: %w", err)
		}
		return uid, dev, true, nil
	}
	return "", "", false, nil
}

// OAuthSessions is what accounts asks the OAuth 2.0 server: which
// sessions are its own, and whether the user approved a cross-signing
// reset on its account page (the m.oauth stage of User-Interactive
// Authentication).
type OAuthSessions interface {
	// IsOAuthSession reports whether the device's tokens came from the
	// OAuth 2.0 API.
	IsOAuthSession(ctx context.Context, uid id.UserID, dev id.DeviceID) (bool, error)
	// CrossSigningResetURL is the account page where the user approves a
	// cross-signing reset.
	CrossSigningResetURL() string
	// CrossSigningResetApproved reports whether the user approved a reset
	// there a short while ago, using the approval up.
	CrossSigningResetApproved(uid id.UserID) bool
}

// CrossSigningResetUIA is SessionUIA for replacing cross-signing keys. A
// session obtained through the OAuth 2.0 API completes it with the m.oauth
// stage, as the spec says: the 401 gives the account page's URL, where
// the user approves the reset, and the client then retries with
// {"type": "m.oauth"}; clients of the stage's unstable name retry with
// the session only. Other sessions authenticate as SessionUIA has them.
func (s *Service) CrossSigningResetUIA(r *http.Request, sess *Session, auth *AuthDict) error {
	if s.OAuth == nil || sess.DeviceID == "" {
		return s.SessionUIA(r, sess, auth)
	}
	viaOAuth, err := s.OAuth.IsOAuthSession(r.Context(), sess.UserID, sess.DeviceID)
	if err != nil {
		return err
	}
	if !viaOAuth {
		return s.SessionUIA(r, sess, auth)
	}
	if auth != nil && auth.Type == "" && auth.Session != "" {
		// A client of the unstable stage retrying after the approval.
		a := *auth
		a.Type = StageOAuthUnstable
		auth = &a
	}
	// The unstable stage's flow comes first: the clients that know only
	// it take the first flow, those that know m.oauth find it second.
	reset := map[string]string{"url": s.OAuth.CrossSigningResetURL()}
	params := map[string]any{StageOAuthUnstable: reset, StageOAuth: reset}
	_, err = s.interactiveAuthParams(r, auth, [][]string{{StageOAuthUnstable}, {StageOAuth}}, params,
		r.Method+" "+r.URL.Path+" "+string(sess.UserID), sess.UserID)
	return err
}
