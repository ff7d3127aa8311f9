package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// AuthedHandler is a handler for an endpoint that needs an access token.
type AuthedHandler func(w http.ResponseWriter, r *http.Request, sess *Session) (any, error)

// Auth wraps h so it runs only with a valid access token.
func (s *Service) Auth(h AuthedHandler) http.HandlerFunc {
	return mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		sess, err := s.AuthenticateRequest(r)
		if err != nil {
			return nil, err
		}
		return h(w, r, sess)
	})
}

// Routes registers the accounts endpoints on mux.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	mux.HandleFunc("GET "+v3+"/login", mxhttp.Handle(s.getLoginFlows))
	mux.HandleFunc("POST "+v3+"/login", mxhttp.Handle(s.postLogin))
	mux.HandleFunc("POST "+v3+"/refresh", mxhttp.Handle(s.postRefresh))
	mux.HandleFunc("POST "+v3+"/register", mxhttp.Handle(s.postRegister))
	mux.HandleFunc("GET "+v3+"/register/available", mxhttp.Handle(s.getAvailable))
	mux.HandleFunc("GET /_matrix/client/v1/register/m.login.registration_token/validity", mxhttp.Handle(s.getTokenValidity))
	mux.HandleFunc("POST "+v3+"/logout", s.Auth(s.postLogout))
	mux.HandleFunc("POST "+v3+"/logout/all", s.Auth(s.postLogoutAll))
	mux.HandleFunc("GET "+v3+"/account/whoami", s.Auth(s.getWhoami))
	mux.HandleFunc("POST "+v3+"/account/password", mxhttp.Handle(s.postPassword))
	mux.HandleFunc("POST "+v3+"/account/deactivate", mxhttp.Handle(s.postDeactivate))
	mux.HandleFunc("GET "+v3+"/devices", s.Auth(s.getDevices))
	mux.HandleFunc("GET "+v3+"/devices/{deviceId}", s.Auth(s.getDevice))
	mux.HandleFunc("PUT "+v3+"/devices/{deviceId}", s.Auth(s.putDevice))
	mux.HandleFunc("DELETE "+v3+"/devices/{deviceId}", s.Auth(s.deleteDevice))
	mux.HandleFunc("POST "+v3+"/delete_devices", s.Auth(s.postDeleteDevices))
	mux.HandleFunc("GET /_synapse/admin/v1/register", mxhttp.Handle(s.getAdminRegisterNonce))
	mux.HandleFunc("POST /_synapse/admin/v1/register", mxhttp.Handle(s.postAdminRegister))
	s.profileRoutes(mux)
}

func (s *Service) getLoginFlows(w http.ResponseWriter, r *http.Request) (any, error) {
	return map[string]any{"flows": []map[string]any{
		{"type": StagePassword},
		{"type": "m.login.token", "get_login_token": true},
		{"type": LoginTypeAppservice},
	}}, nil
}

type identifier struct {
	Type    string `json:"type"`
	User    string `json:"user"`
	Medium  string `json:"medium"`
	Address string `json:"address"`
}

func (s *Service) identifierUser(auth *AuthDict) (id.UserID, error) {
	user := auth.User
	if len(auth.Identifier) > 0 && string(auth.Identifier) != "null" {
		var ident identifier
		if err := json.Unmarshal(auth.Identifier, &ident); err != nil {
			return "", mxhttp.BadJSON("invalid identifier")
		}
		switch ident.Type {
		case "m.id.user":
			user = ident.User
		case "m.id.thirdparty", "m.id.phone":
			return "", mxhttp.Forbidden("third-party identifiers are not supported on this server")
		default:
			return "", mxhttp.BadRequest("unknown identifier type %q", ident.Type)
		}
	}
	if user == "" {
		return "", mxhttp.MissingParam("missing user identifier")
	}
	if strings.HasPrefix(user, "@") {
		if _, hs, err := id.UserID(user).Parse(); err != nil || hs != s.opts.ServerName {
			return "", mxhttp.Forbidden("invalid username or password")
		}
	}
	return s.ParseLocalUser(user)
}

// checkPassword verifies a user's password, after counting the guess
// (allowGuess); wrong user and wrong password give the same answer.
func (s *Service) checkPassword(r *http.Request, uid id.UserID, password string) (*User, error) {
	if err := s.allowGuess(r, uid); err != nil {
		return nil, err
	}
	u, ok, err := s.GetUser(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	if !ok || u.PasswordHash == "" {
		// Spend comparable time so user existence does not leak by timing.
		CheckPassword(dummyHash(), password)
		return nil, mxhttp.Forbidden("invalid username or password")
	}
	match, err := CheckPassword(u.PasswordHash, password)
	if err != nil || !match {
		return nil, mxhttp.Forbidden("invalid username or password")
	}
	if u.Deactivated {
		return nil, mxhttp.UserDeactivated("this account has been deactivated")
	}
	if u.Locked {
		return nil, mxhttp.UserLocked("this account has been locked")
	}
	return u, nil
}

// dummyHash is a hash to check against when there is no user, made on
// first use.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("matrixos-dummy-password")
	return h
})

type loginRequest struct {
	Type                     string          `json:"type"`
	Identifier               json.RawMessage `json:"identifier"`
	User                     string          `json:"user"`
	Password                 string          `json:"password"`
	Token                    string          `json:"token"`
	DeviceID                 id.DeviceID     `json:"device_id"`
	InitialDeviceDisplayName *string         `json:"initial_device_display_name"`
	RefreshToken             bool            `json:"refresh_token"`
}

func (s *Service) postLogin(w http.ResponseWriter, r *http.Request) (any, error) {
	var req loginRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var uid id.UserID
	switch req.Type {
	case StagePassword:
		var err error
		uid, err = s.identifierUser(&AuthDict{User: req.User, Identifier: req.Identifier})
		if err != nil {
			return nil, err
		}
		if _, err := s.checkPassword(r, uid, req.Password); err != nil {
			return nil, err
		}
	case "m.login.token":
		var err error
		uid, err = s.consumeLoginToken(r, req.Token)
		if err != nil {
			return nil, err
		}
	case LoginTypeAppservice:
		var err error
		if uid, err = s.loginAppservice(r, &req); err != nil {
			return nil, err
		}
	case "":
		return nil, mxhttp.MissingParam("missing login type")
	default:
		return nil, mxhttp.BadRequest("unsupported login type %q", req.Type)
	}
	if len(req.DeviceID) > 255 {
		return nil, mxhttp.InvalidParam("device_id too long")
	}
	res, err := s.NewSession(r.Context(), uid, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
	if err != nil {
		return nil, err
	}
	res.HomeServer = s.opts.ServerName
	return loginResponse{LoginResult: res, WellKnown: nil}, nil
}

type loginResponse struct {
	*LoginResult
	WellKnown any `json:"well_known,omitempty"`
}

// CreateLoginToken issues a short-lived single-use m.login.token.
func (s *Service) CreateLoginToken(ctx context.Context, uid id.UserID, ttl time.Duration) (string, error) {
	tok := RandomToken("mol_", 24)
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
			HashToken(tok), uid, time.Now().Add(ttl).UnixMilli())
		return err
	})
	return tok, err
}

// consumeLoginToken redeems a login token, after counting the guess.
func (s *Service) consumeLoginToken(r *http.Request, tok string) (id.UserID, error) {
	if err := s.allowGuess(r, ""); err != nil {
		return "", err
	}
	ctx := r.Context()
	var uid id.UserID
	var expires int64
	found := false
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		err := tx.QueryRow(ctx, "SELECT user_id, expires_ts FROM login_tokens WHERE token_hash = $1", HashToken(tok)).Scan(&uid, &expires)
		if err != nil {
			return nil
		}
		found = true
		_, err = tx.Exec(ctx, "DELETE FROM login_tokens WHERE token_hash = $1", HashToken(tok))
		return err
	})
	if err != nil {
		return "", err
	}
	if !found || time.Now().UnixMilli() > expires {
		return "", mxhttp.Forbidden("invalid or expired login token")
	}
	return uid, nil
}

func (s *Service) postRefresh(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.RefreshToken == "" {
		return nil, mxhttp.MissingParam("missing refresh_token")
	}
	res, err := s.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"access_token": res.AccessToken, "refresh_token": res.RefreshToken}
	if res.ExpiresInMS > 0 {
		out["expires_in_ms"] = res.ExpiresInMS
	}
	return out, nil
}

type registerRequest struct {
	Type                     string      `json:"type"`
	Auth                     *AuthDict   `json:"auth"`
	Username                 string      `json:"username"`
	Password                 string      `json:"password"`
	DeviceID                 id.DeviceID `json:"device_id"`
	InitialDeviceDisplayName *string     `json:"initial_device_display_name"`
	InhibitLogin             bool        `json:"inhibit_login"`
	RefreshToken             bool        `json:"refresh_token"`
}

// registrationFlows are the UIA flows /register offers. With open
// registration the dummy stage is the only flow: offering the token flow
// beside it makes clients such as Element ask for a token nobody needs.
func (s *Service) registrationFlows() [][]string {
	if s.opts.OpenRegistration {
		return [][]string{{StageDummy}}
	}
	if s.opts.RegistrationTokens {
		return [][]string{{StageRegistrationToken}}
	}
	return nil
}

func (s *Service) postRegister(w http.ResponseWriter, r *http.Request) (any, error) {
	kind := r.URL.Query().Get("kind")
	if kind == "guest" {
		return nil, mxhttp.Forbidden("guest access is disabled on this server")
	}
	if kind != "" && kind != "user" {
		return nil, mxhttp.InvalidParam("unknown kind %q", kind)
	}
	var req registerRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Type == LoginTypeAppservice {
		return s.registerAppservice(r, &req)
	}
	flows := s.registrationFlows()
	if len(flows) == 0 {
		return nil, mxhttp.Forbidden("registration is disabled on this server")
	}
	localpart := strings.ToLower(req.Username)
	if localpart == "" {
		localpart = strings.ToLower(string(newDeviceID()))
	}
	if err := s.ValidateLocalpart(localpart); err != nil {
		return nil, err
	}
	if err := s.checkNotExclusive(s.UserID(localpart)); err != nil {
		return nil, err
	}
	if err := CheckPasswordLength(req.Password); err != nil {
		return nil, err
	}
	if _, taken, err := s.GetUser(r.Context(), s.UserID(localpart)); err != nil {
		return nil, err
	} else if taken {
		return nil, ErrUserExists
	}
	done, err := s.interactiveAuth(r, req.Auth, flows, "register", "")
	if err != nil {
		return nil, err
	}
	uid, err := s.createUser(r.Context(), localpart, req.Password, false, done.token)
	if err != nil {
		return nil, err
	}
	if req.InhibitLogin {
		return map[string]any{"user_id": uid, "home_server": s.opts.ServerName}, nil
	}
	return s.NewSession(r.Context(), uid, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
}

func (s *Service) getAvailable(w http.ResponseWriter, r *http.Request) (any, error) {
	lp := r.URL.Query().Get("username")
	if lp == "" {
		return nil, mxhttp.MissingParam("missing username")
	}
	lp = strings.ToLower(lp)
	if err := s.ValidateLocalpart(lp); err != nil {
		return nil, err
	}
	if err := s.checkNotExclusive(s.UserID(lp)); err != nil {
		return nil, err
	}
	_, taken, err := s.GetUser(r.Context(), s.UserID(lp))
	if err != nil {
		return nil, err
	}
	if taken {
		return nil, ErrUserExists
	}
	return map[string]bool{"available": true}, nil
}

func (s *Service) postLogout(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	if err := s.Logout(r.Context(), sess); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) postLogoutAll(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	devs, err := s.Devices(r.Context(), sess.UserID)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		if err := s.DeleteDevice(r.Context(), sess.UserID, d.DeviceID); err != nil {
			return nil, err
		}
	}
	return mxhttp.Empty, nil
}

func (s *Service) getWhoami(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	return map[string]any{"user_id": sess.UserID, "device_id": sess.DeviceID, "is_guest": sess.IsGuest}, nil
}

// RequireUIA authenticates a request that carries an access token and
// possibly a UIA "auth" dict, and requires the password stage (the dummy
// stage for accounts without a password). It returns the UIA 401 response
// as the error until a flow is complete.
func (s *Service) RequireUIA(r *http.Request, auth *AuthDict) (*Session, error) {
	sess, err := s.AuthenticateRequest(r)
	if err != nil {
		return nil, err
	}
	return sess, s.SessionUIA(r, sess, auth)
}

// SessionUIA is RequireUIA for a request whose access token was already
// authenticated as sess (handlers check the token before they read the
// body, so a bad token is answered as such whatever the body holds).
func (s *Service) SessionUIA(r *http.Request, sess *Session, auth *AuthDict) error {
	u, _, err := s.GetUser(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	flows := [][]string{{StagePassword}}
	if u != nil && u.PasswordHash == "" {
		flows = [][]string{{StageDummy}} // accounts without a password (SSO, appservice)
	}
	_, err = s.interactiveAuth(r, auth, flows, r.Method+" "+r.URL.Path+" "+string(sess.UserID), sess.UserID)
	return err
}

// optionalToken authenticates the access token of an endpoint where it is
// optional (password change, deactivation): nil without a token, an error
// for a bad one.
func (s *Service) optionalToken(r *http.Request) (*Session, error) {
	if mxhttp.AccessToken(r) == "" {
		return nil, nil
	}
	return s.AuthenticateRequest(r)
}

// optionalTokenUIA completes UIA for those endpoints: as sess when the
// request had a token; without one, the password stage identifies the
// user, and the session has no device.
func (s *Service) optionalTokenUIA(r *http.Request, sess *Session, auth *AuthDict) (*Session, error) {
	if sess != nil {
		return sess, s.SessionUIA(r, sess, auth)
	}
	done, err := s.interactiveAuth(r, auth, [][]string{{StagePassword}}, r.Method+" "+r.URL.Path, "")
	if err != nil {
		return nil, err
	}
	if done.user == "" {
		return nil, mxhttp.Forbidden("authentication did not identify a user")
	}
	return &Session{UserID: done.user}, nil
}

func (s *Service) postPassword(w http.ResponseWriter, r *http.Request) (any, error) {
	tokenSess, err := s.optionalToken(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Auth          *AuthDict `json:"auth"`
		NewPassword   string    `json:"new_password"`
		LogoutDevices *bool     `json:"logout_devices"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.NewPassword == "" {
		return nil, mxhttp.MissingParam("missing new_password")
	}
	if err := CheckPasswordLength(req.NewPassword); err != nil {
		return nil, err
	}
	sess, err := s.optionalTokenUIA(r, tokenSess, req.Auth)
	if err != nil {
		return nil, err
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	if err := s.SetPassword(r.Context(), sess.UserID, req.NewPassword, logout, sess.DeviceID); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) postDeactivate(w http.ResponseWriter, r *http.Request) (any, error) {
	tokenSess, err := s.optionalToken(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Auth  *AuthDict `json:"auth"`
		Erase bool      `json:"erase"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	sess, err := s.optionalTokenUIA(r, tokenSess, req.Auth)
	if err != nil {
		return nil, err
	}
	if err := s.Deactivate(r.Context(), sess.UserID, req.Erase); err != nil {
		return nil, err
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

func (s *Service) getDevices(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	devs, err := s.Devices(r.Context(), sess.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"devices": devs}, nil
}

func (s *Service) getDevice(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	return s.GetDevice(r.Context(), sess.UserID, id.DeviceID(r.PathValue("deviceId")))
}

func (s *Service) putDevice(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	dev := id.DeviceID(r.PathValue("deviceId"))
	if req.DisplayName != nil && len(*req.DisplayName) > 1024 {
		return nil, mxhttp.InvalidParam("display_name too long")
	}
	if s.managesDevices(sess) {
		if len(dev) > 255 {
			return nil, mxhttp.InvalidParam("device ID too long")
		}
		created, err := s.createDevice(r.Context(), sess.UserID, dev, req.DisplayName)
		if err != nil {
			return nil, err
		}
		if created {
			mxhttp.WriteJSON(w, http.StatusCreated, mxhttp.Empty)
			return nil, nil
		}
	}
	if req.DisplayName == nil {
		if _, err := s.GetDevice(r.Context(), sess.UserID, dev); err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	}
	if err := s.RenameDevice(r.Context(), sess.UserID, dev, *req.DisplayName); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) deleteDevice(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	var req struct {
		Auth *AuthDict `json:"auth"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	// Deleting a device that is already gone succeeds, as the spec says.
	dev := id.DeviceID(r.PathValue("deviceId"))
	if err := s.deviceDeletionUIA(r, sess, req.Auth); err != nil {
		return nil, err
	}
	if err := s.DeleteDevice(r.Context(), sess.UserID, dev); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) postDeleteDevices(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	var req struct {
		Auth    *AuthDict     `json:"auth"`
		Devices []id.DeviceID `json:"devices"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Devices == nil {
		return nil, mxhttp.MissingParam("missing devices")
	}
	if len(req.Devices) > 1000 {
		return nil, mxhttp.InvalidParam("too many devices")
	}
	if err := s.deviceDeletionUIA(r, sess, req.Auth); err != nil {
		return nil, err
	}
	for _, d := range req.Devices {
		if err := s.DeleteDevice(r.Context(), sess.UserID, d); err != nil {
			return nil, err
		}
	}
	return mxhttp.Empty, nil
}

// deviceDeletionUIA asks for UIA before devices are deleted, except of an
// appservice that manages its users' devices (MSC4190).
func (s *Service) deviceDeletionUIA(r *http.Request, sess *Session, auth *AuthDict) error {
	if s.managesDevices(sess) {
		return nil
	}
	return s.SessionUIA(r, sess, auth)
}

// Shared-secret admin registration (Synapse-compatible).

func (s *Service) getAdminRegisterNonce(w http.ResponseWriter, r *http.Request) (any, error) {
	if s.opts.SharedSecret == "" {
		return nil, mxhttp.NotFound("shared-secret registration is disabled")
	}
	sid, _ := s.uia.create("admin-register")
	return map[string]string{"nonce": sid}, nil
}

func (s *Service) postAdminRegister(w http.ResponseWriter, r *http.Request) (any, error) {
	if s.opts.SharedSecret == "" {
		return nil, mxhttp.NotFound("shared-secret registration is disabled")
	}
	var req struct {
		Nonce       string `json:"nonce"`
		Username    string `json:"username"`
		DisplayName string `json:"displayname"`
		Password    string `json:"password"`
		Admin       bool   `json:"admin"`
		MAC         string `json:"mac"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Nonce == "" || req.Username == "" || req.MAC == "" {
		return nil, mxhttp.MissingParam("nonce, username and mac are required")
	}
	sess := s.uia.get(req.Nonce)
	if sess == nil || sess.pinned != "admin-register" {
		return nil, &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Message: "unrecognised nonce"}
	}
	s.uia.remove(req.Nonce)
	mac := hmac.New(sha1.New, []byte(s.opts.SharedSecret))
	admin := "notadmin"
	if req.Admin {
		admin = "admin"
	}
	mac.Write([]byte(req.Nonce + "\x00" + req.Username + "\x00" + req.Password + "\x00" + admin))
	want := mac.Sum(nil)
	got, err := hex.DecodeString(req.MAC)
	if err != nil || !hmac.Equal(want, got) {
		return nil, mxhttp.Forbidden("HMAC incorrect")
	}
	uid, err := s.CreateUser(r.Context(), strings.ToLower(req.Username), req.Password, req.Admin)
	if err != nil {
		return nil, err
	}
	if req.DisplayName != "" {
		s.SetProfileField(r.Context(), uid, "displayname", req.DisplayName)
	}
	return s.NewSession(r.Context(), uid, "", nil, false)
}
