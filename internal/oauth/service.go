package oauth

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/storage"
)

// Lifetimes of what the server keeps in memory.
const (
	authRequestLifetime    = 30 * time.Minute
	codeLifetime           = 5 * time.Minute
	deviceGrantLifetime    = 10 * time.Minute
	browserSessionLifetime = 12 * time.Hour
	// anonymousSessionLifetime bounds a browser session nobody logged in to.
	anonymousSessionLifetime = time.Hour
	devicePollInterval       = 5 * time.Second
	maxPending               = 100000
)

// Options configure the service.
type Options struct {
	// BaseURL returns the URL clients reach the node at, without a
	// trailing slash (the issuer and the base of every endpoint).
	BaseURL func() string
	// ServerKey is the server's signing key; the key that signs ID
	// tokens is derived from it. Without it, no ID tokens are issued.
	ServerKey ed25519.PrivateKey
	// AccessTokenLifetime is how long an access token lasts before the
	// client refreshes it (0: defaultAccessTokenLifetime). OAuth access
	// tokens always expire: clients (matrix-js-sdk) expect expires_in.
	AccessTokenLifetime time.Duration
}

// defaultAccessTokenLifetime is the lifetime of OAuth access tokens when
// access_token_lifetime is not set.
const defaultAccessTokenLifetime = time.Hour

// Service is the OAuth 2.0 authorization server.
type Service struct {
	db       *storage.DB
	log      *slog.Logger
	accounts *accounts.Service
	opts     Options

	requests *expiring[*authRequest]
	codes    *expiring[*codeGrant]
	devices  *expiring[*deviceGrant]
	// userCodes maps a device grant's user code to its device code.
	userCodes *expiring[string]
	resets    *expiring[struct{}]        // user ID -> approved cross-signing reset
	browsers  *expiring[*browserSession] // logged in
	anonymous *expiring[*browserSession] // not logged in yet
	idTokens  *idTokenSigner             // nil: no ID tokens

	// Limiter, when set, bounds per client IP the authorization requests
	// and the browser sessions anyone can start (see limitPending).
	Limiter accounts.Limiter

	// lastPrune is when pruneClients last ran, in Unix seconds, and
	// sincePrune the registrations since.
	lastPrune  atomic.Int64
	sincePrune atomic.Int64
}

// New returns the service.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, opts Options) *Service {
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = defaultAccessTokenLifetime
	}
	return &Service{
		db: db, log: log, accounts: acc, opts: opts,
		requests:  newExpiring[*authRequest](authRequestLifetime, maxPending),
		codes:     newExpiring[*codeGrant](codeLifetime, maxPending),
		devices:   newExpiring[*deviceGrant](deviceGrantLifetime, maxPending),
		userCodes: newExpiring[string](deviceGrantLifetime, maxPending),
		browsers:  newExpiring[*browserSession](browserSessionLifetime, maxPending),
		anonymous: newExpiring[*browserSession](anonymousSessionLifetime, maxPending),
		resets:    newExpiring[struct{}](crossSigningResetWindow, maxPending),
		idTokens:  newIDTokenSigner(opts.ServerKey),
	}
}

// The paths of the server's endpoints and pages.
const (
	pathAuthorize           = "/oauth2/authorize"
	pathToken               = "/oauth2/token"
	pathRegister            = "/oauth2/register"
	pathRevoke              = "/oauth2/revoke"
	pathDeviceAuthorization = "/oauth2/device_authorization"
	pathDevice              = "/oauth2/device"
	pathConsent             = "/oauth2/consent"
	pathLogin               = "/oauth2/login"
	pathLogout              = "/oauth2/logout"
	pathSignup              = "/oauth2/signup"
	pathAccount             = "/account"
	pathStyle               = "/oauth2/static/style.css"
	pathKeys                = "/oauth2/keys.json"
)

// Routes registers the endpoints and pages on mux.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_matrix/client/v1/auth_metadata", s.getMetadata)
	mux.HandleFunc("GET /_matrix/client/unstable/org.matrix.msc2965/auth_metadata", s.getMetadata)
	// The issuer alone, as the earlier form of MSC2965 served it: clients
	// of that era (Element Web 1.11, matrix-js-sdk before 35) ask only
	// this, then read the metadata from the issuer's OpenID Connect
	// discovery document.
	mux.HandleFunc("GET /_matrix/client/unstable/org.matrix.msc2965/auth_issuer", s.getIssuer)
	// The discovery documents of RFC 8414 and OpenID Connect, at the
	// issuer: clients that refresh through an OIDC library look there.
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.getMetadata)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.getMetadata)
	mux.HandleFunc("POST "+pathRegister, s.postRegister)
	mux.HandleFunc("POST "+pathToken, s.postToken)
	mux.HandleFunc("POST "+pathRevoke, s.postRevoke)
	mux.HandleFunc("POST "+pathDeviceAuthorization, s.postDeviceAuthorization)
	mux.HandleFunc("GET "+pathKeys, s.getKeys)
	s.pageRoutes(mux)
}

// actionsSupported are the account management actions the account page
// supports.
var actionsSupported = []string{
	"org.matrix.profile",
	"org.matrix.devices_list",
	"org.matrix.device_view",
	"org.matrix.device_delete",
	"org.matrix.account_deactivate",
	actionCrossSigningReset,
}

// Metadata is the authorization server metadata (RFC 8414) with the
// Matrix account management extension.
func (s *Service) Metadata() map[string]any {
	base := s.opts.BaseURL()
	m := map[string]any{
		"issuer":                                     base + "/",
		"authorization_endpoint":                     base + pathAuthorize,
		"token_endpoint":                             base + pathToken,
		"registration_endpoint":                      base + pathRegister,
		"revocation_endpoint":                        base + pathRevoke,
		"device_authorization_endpoint":              base + pathDeviceAuthorization,
		"response_types_supported":                   []string{"code"},
		"response_modes_supported":                   []string{"query", "fragment"},
		"grant_types_supported":                      []string{grantAuthorizationCode, grantRefreshToken, grantDeviceCode},
		"code_challenge_methods_supported":           []string{"S256"},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
		"scopes_supported":                           []string{scopeAPI, scopeDevicePrefix + "*"},
		"account_management_uri":                     base + pathAccount,
		"account_management_actions_supported":       actionsSupported,
	}
	if s.idTokens != nil {
		m["jwks_uri"] = base + pathKeys
		m["id_token_signing_alg_values_supported"] = []string{"EdDSA"}
		m["subject_types_supported"] = []string{"public"}
		m["scopes_supported"] = []string{scopeAPI, scopeDevicePrefix + "*", scopeOpenID}
	}
	if s.accounts.RegistrationMode() != accounts.RegistrationClosed {
		m["prompt_values_supported"] = []string{"create"}
	}
	return m
}

func (s *Service) getMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, s.Metadata())
}

func (s *Service) getIssuer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]string{"issuer": s.Metadata()["issuer"].(string)})
}

// writeJSON writes v as a JSON response that caches never keep.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// writeOAuthError writes an RFC 6749 error response.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// serverError logs err and answers server_error.
func (s *Service) serverError(w http.ResponseWriter, err error) {
	s.log.Error("oauth", "err", err)
	writeOAuthError(w, http.StatusInternalServerError, "server_error", "internal error")
}

// session is an OAuth session: the device a client holds.
type session struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	ClientID string
	Scope    string
}

// recordSession notes that client holds the device.
func (s *Service) recordSession(ctx context.Context, sess session) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO oauth_sessions (user_id, device_id, client_id, scope, created_ts) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, device_id) DO UPDATE SET client_id = excluded.client_id, scope = excluded.scope, created_ts = excluded.created_ts`,
			sess.UserID, sess.DeviceID, sess.ClientID, sess.Scope, time.Now().UnixMilli())
		return err
	})
}

// sessionOf returns the client that holds a device and the scope it
// was granted; clientID is "" for a device logged in without OAuth.
func (s *Service) sessionOf(ctx context.Context, uid id.UserID, dev id.DeviceID) (clientID, scope string, err error) {
	err = s.db.QueryRow(ctx, "SELECT client_id, scope FROM oauth_sessions WHERE user_id = $1 AND device_id = $2", uid, dev).Scan(&clientID, &scope)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("load oauth session: %w", err)
	}
	return clientID, scope, nil
}

// sessionClients maps each of a user's OAuth devices to its client's name.
func (s *Service) sessionClients(ctx context.Context, uid id.UserID) (map[id.DeviceID]string, error) {
	rows, err := s.db.Query(ctx, `SELECT s.device_id, c.client_id, c.metadata FROM oauth_sessions s
		JOIN oauth_clients c ON c.client_id = s.client_id WHERE s.user_id = $1`, uid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[id.DeviceID]string{}
	for rows.Next() {
		var dev id.DeviceID
		c := &Client{}
		var meta string
		if err := rows.Scan(&dev, &c.ID, &meta); err != nil {
			return nil, err
		}
		json.Unmarshal([]byte(meta), &c.ClientMetadata)
		out[dev] = c.Name()
	}
	return out, rows.Err()
}

// OnDeviceDeleted forgets the OAuth session a deleted device was (an
// accounts DeviceDeleted hook).
func (s *Service) OnDeviceDeleted(ctx context.Context, uid id.UserID, dev id.DeviceID) {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM oauth_sessions WHERE user_id = $1 AND device_id = $2", uid, dev)
		return err
	})
	if err != nil {
		s.log.Warn("forget oauth session", "user_id", uid, "device_id", dev, "err", err)
	}
}

// OnDeactivated ends the account's browser sessions (an accounts
// Deactivated hook).
func (s *Service) OnDeactivated(ctx context.Context, uid id.UserID) {
	s.browsers.deleteFunc(func(b *browserSession) bool { return b.user == uid })
}

// trimmed is strings.TrimSpace, for form values.
func trimmed(r *http.Request, key string) string { return strings.TrimSpace(r.PostFormValue(key)) }
