package admin

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

func (s *Service) userRoutes(mux *http.ServeMux) {
	// The spec's admin endpoints.
	mux.HandleFunc("GET /_matrix/client/v3/admin/whois/{userId}", s.accounts.Auth(s.specWhois))
	mux.HandleFunc("GET /_matrix/client/v1/admin/suspend/{userId}", s.admin(s.getFlag("suspended")))
	mux.HandleFunc("PUT /_matrix/client/v1/admin/suspend/{userId}", s.admin(s.putFlag("suspended")))
	mux.HandleFunc("GET /_matrix/client/v1/admin/lock/{userId}", s.admin(s.getFlag("locked")))
	mux.HandleFunc("PUT /_matrix/client/v1/admin/lock/{userId}", s.admin(s.putFlag("locked")))

	// Synapse's user admin API.
	const v1, v2 = "/_synapse/admin/v1", "/_synapse/admin/v2"
	mux.HandleFunc("GET "+v2+"/users", s.admin(s.listUsers))
	mux.HandleFunc("GET "+v2+"/users/{userId}", s.admin(s.getUser))
	mux.HandleFunc("PUT "+v2+"/users/{userId}", s.admin(s.putUser))
	mux.HandleFunc("GET "+v2+"/users/{userId}/devices", s.admin(s.userDevices))
	mux.HandleFunc("POST "+v1+"/deactivate/{userId}", s.admin(s.deactivate))
	mux.HandleFunc("POST "+v1+"/reset_password/{userId}", s.admin(s.resetPassword))
	mux.HandleFunc("POST "+v1+"/users/{userId}/shadow_ban", s.admin(s.shadowBan(true)))
	mux.HandleFunc("DELETE "+v1+"/users/{userId}/shadow_ban", s.admin(s.shadowBan(false)))
	mux.HandleFunc("POST "+v1+"/users/{userId}/login", s.admin(s.loginAs))
	mux.HandleFunc("GET "+v1+"/users/{userId}/joined_rooms", s.admin(s.userJoinedRooms))
	mux.HandleFunc("GET "+v1+"/users/{userId}/admin", s.admin(s.getUserAdmin))
	mux.HandleFunc("PUT "+v1+"/users/{userId}/admin", s.admin(s.putUserAdmin))
	mux.HandleFunc("GET "+v1+"/whois/{userId}", s.admin(s.whois))
	mux.HandleFunc("PUT "+v1+"/suspend/{userId}", s.admin(s.synapseSuspend))
	mux.HandleFunc("GET "+v1+"/username_available", s.admin(s.usernameAvailable))

	// Ours: many accounts in one call.
	mux.HandleFunc("POST /_matrixos/admin/v1/users", s.admin(s.createUsers))
}

// whoisJSON is the spec's whois answer: one session per device, with the
// device's last seen address.
func (s *Service) whoisJSON(ctx context.Context, uid id.UserID) (any, error) {
	devs, err := s.accounts.Devices(ctx, uid)
	if err != nil {
		return nil, err
	}
	devices := map[id.DeviceID]any{}
	for _, d := range devs {
		conns := []map[string]any{}
		if d.LastSeenIP != "" || d.LastSeenTS != 0 {
			conns = append(conns, map[string]any{"ip": d.LastSeenIP, "last_seen": d.LastSeenTS, "user_agent": ""})
		}
		devices[d.DeviceID] = map[string]any{"sessions": []any{map[string]any{"connections": conns}}}
	}
	return map[string]any{"user_id": uid, "devices": devices}, nil
}

// specWhois may be called by admins and by the user about themselves.
func (s *Service) specWhois(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	uid := id.UserID(r.PathValue("userId"))
	if uid != sess.UserID && !sess.IsAdmin {
		return nil, mxhttp.Forbidden("only server admins may look up other users")
	}
	if sess.IsAdmin {
		s.log.Info("admin API call", "admin", sess.UserID, "method", r.Method, "path", r.URL.Path)
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	return s.whoisJSON(r.Context(), u.ID)
}

func (s *Service) whois(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	return s.whoisJSON(r.Context(), u.ID)
}

// moderationTarget loads the target of the spec's suspend and lock
// endpoints: an active local user who is not an admin.
func (s *Service) moderationTarget(r *http.Request) (*accounts.User, error) {
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	if u.Deactivated {
		return nil, mxhttp.NotFound("user not found")
	}
	if u.IsAdmin {
		return nil, mxhttp.Forbidden("the target user is a server admin")
	}
	return u, nil
}

func flagValue(u *accounts.User, flag string) bool {
	if flag == "locked" {
		return u.Locked
	}
	return u.Suspended
}

func (s *Service) getFlag(flag string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		u, err := s.moderationTarget(r)
		if err != nil {
			return nil, err
		}
		return map[string]bool{flag: flagValue(u, flag)}, nil
	}
}

func (s *Service) putFlag(flag string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		var req map[string]*bool
		if err := mxhttp.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		v := req[flag]
		if v == nil {
			return nil, mxhttp.MissingParam("missing %s", flag)
		}
		if id.UserID(r.PathValue("userId")) == sess.UserID {
			return nil, mxhttp.Forbidden("you cannot change this on your own account")
		}
		u, err := s.moderationTarget(r)
		if err != nil {
			return nil, err
		}
		if err := s.setFlag(r.Context(), u.ID, flag, *v); err != nil {
			return nil, err
		}
		return map[string]bool{flag: *v}, nil
	}
}

// setFlag changes a moderation flag (accounts forgets the user's cached
// sessions, so the guard sees it on the next request).
func (s *Service) setFlag(ctx context.Context, uid id.UserID, flag string, v bool) error {
	var err error
	switch flag {
	case "locked":
		err = s.accounts.SetLocked(ctx, uid, v)
	case "suspended":
		err = s.accounts.SetSuspended(ctx, uid, v)
	case "shadow_banned":
		err = s.accounts.SetShadowBanned(ctx, uid, v)
	}
	if err == nil {
		s.log.Info("account flag changed", "user_id", uid, "flag", flag, "value", v)
	}
	return err
}

func (s *Service) synapseSuspend(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		Suspend *bool `json:"suspend"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Suspend == nil {
		return nil, mxhttp.MissingParam("missing suspend")
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	if err := s.setFlag(r.Context(), u.ID, "suspended", *req.Suspend); err != nil {
		return nil, err
	}
	return map[string]bool{"user_" + string(u.ID) + "_suspended": *req.Suspend}, nil
}

// userJSON renders an account as Synapse's admin API does. creation_ts is
// in seconds in the single-user answer and milliseconds in the list.
func userJSON(u *accounts.UserRecord, list bool) map[string]any {
	created := u.CreatedTS / 1000
	if list {
		created = u.CreatedTS
	}
	m := map[string]any{
		"name":          u.ID,
		"displayname":   orNull(u.DisplayName),
		"avatar_url":    orNull(u.AvatarURL),
		"is_guest":      u.IsGuest,
		"admin":         u.IsAdmin,
		"deactivated":   u.Deactivated,
		"erased":        false,
		"shadow_banned": u.ShadowBanned,
		"locked":        u.Locked,
		"suspended":     u.Suspended,
		"creation_ts":   created,
		"last_seen_ts":  u.LastSeenTS,
		"user_type":     nil,
		"approved":      true,
		"appservice_id": orNull(u.Appservice),
	}
	if !list {
		m["threepids"] = []any{}
		m["external_ids"] = []any{}
		m["consent_version"] = nil
		m["consent_server_notice_sent"] = nil
		m["consent_ts"] = nil
	}
	return m
}

func (s *Service) userRecord(ctx context.Context, uid id.UserID) (*accounts.UserRecord, error) {
	u, ok, err := s.accounts.GetUser(ctx, uid)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("user not found")
	}
	rec := &accounts.UserRecord{User: *u}
	rec.DisplayName, rec.AvatarURL = s.accounts.DisplayName(ctx, uid)
	if devs, err := s.accounts.Devices(ctx, uid); err == nil {
		for _, d := range devs {
			rec.LastSeenTS = max(rec.LastSeenTS, d.LastSeenTS)
		}
	}
	return rec, nil
}

var userOrders = map[string]func(a, b *accounts.UserRecord) int{
	"name":          func(a, b *accounts.UserRecord) int { return strings.Compare(string(a.ID), string(b.ID)) },
	"displayname":   func(a, b *accounts.UserRecord) int { return strings.Compare(a.DisplayName, b.DisplayName) },
	"avatar_url":    func(a, b *accounts.UserRecord) int { return strings.Compare(a.AvatarURL, b.AvatarURL) },
	"creation_ts":   func(a, b *accounts.UserRecord) int { return cmp.Compare(a.CreatedTS, b.CreatedTS) },
	"last_seen_ts":  func(a, b *accounts.UserRecord) int { return cmp.Compare(a.LastSeenTS, b.LastSeenTS) },
	"is_guest":      func(a, b *accounts.UserRecord) int { return cmpBool(a.IsGuest, b.IsGuest) },
	"admin":         func(a, b *accounts.UserRecord) int { return cmpBool(a.IsAdmin, b.IsAdmin) },
	"deactivated":   func(a, b *accounts.UserRecord) int { return cmpBool(a.Deactivated, b.Deactivated) },
	"shadow_banned": func(a, b *accounts.UserRecord) int { return cmpBool(a.ShadowBanned, b.ShadowBanned) },
	"locked":        func(a, b *accounts.UserRecord) int { return cmpBool(a.Locked, b.Locked) },
	"user_type":     func(a, b *accounts.UserRecord) int { return 0 },
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// listUsers answers GET /_synapse/admin/v2/users: from, limit, user_id and
// name (substring filters; name also matches display names), guests
// (default true), deactivated and locked (default false: left out), admins
// (only admins, or only non-admins), order_by and dir.
func (s *Service) listUsers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var flags [4]*bool
	for i, name := range []string{"guests", "deactivated", "locked", "admins"} {
		if flags[i], err = boolParam(r, name); err != nil {
			return nil, err
		}
	}
	guests, deactivated, locked, admins := flags[0], flags[1], flags[2], flags[3]
	order := q.Get("order_by")
	if order == "" {
		order = "name"
	}
	less, ok := userOrders[order]
	if !ok {
		return nil, mxhttp.InvalidParam("unknown order_by %q", order)
	}
	dir := q.Get("dir")
	if dir != "" && dir != "f" && dir != "b" {
		return nil, mxhttp.InvalidParam("dir must be f or b")
	}
	name, userID := strings.ToLower(q.Get("name")), strings.ToLower(q.Get("user_id"))
	all, err := s.accounts.ListUserRecords(r.Context())
	if err != nil {
		return nil, err
	}
	var matched []*accounts.UserRecord
	for i := range all {
		u := &all[i]
		switch {
		case guests != nil && !*guests && u.IsGuest,
			(deactivated == nil || !*deactivated) && u.Deactivated,
			(locked == nil || !*locked) && u.Locked,
			admins != nil && *admins != u.IsAdmin:
			continue
		}
		if name != "" {
			lp, _, _ := u.ID.Parse()
			if !strings.Contains(strings.ToLower(lp), name) && !strings.Contains(strings.ToLower(u.DisplayName), name) {
				continue
			}
		} else if userID != "" && !strings.Contains(strings.ToLower(string(u.ID)), userID) {
			continue
		}
		matched = append(matched, u)
	}
	slices.SortStableFunc(matched, func(a, b *accounts.UserRecord) int {
		c := less(a, b)
		if c == 0 {
			c = strings.Compare(string(a.ID), string(b.ID))
		}
		if dir == "b" {
			return -c
		}
		return c
	})
	part, next := window(matched, from, limit)
	users := make([]map[string]any, 0, len(part))
	for _, u := range part {
		users = append(users, userJSON(u, true))
	}
	resp := map[string]any{"users": users, "total": len(matched)}
	if next >= 0 {
		resp["next_token"] = strconv.Itoa(next)
	}
	return resp, nil
}

func (s *Service) getUser(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	uid, err := s.localUser(r)
	if err != nil {
		return nil, err
	}
	rec, err := s.userRecord(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	return userJSON(rec, false), nil
}

type putUserRequest struct {
	Password      *string `json:"password"`
	LogoutDevices *bool   `json:"logout_devices"`
	DisplayName   *string `json:"displayname"`
	AvatarURL     *string `json:"avatar_url"`
	Admin         *bool   `json:"admin"`
	Deactivated   *bool   `json:"deactivated"`
	Locked        *bool   `json:"locked"`
	UserType      *string `json:"user_type"`
}

// putUser creates an account (201) or modifies one (200).
func (s *Service) putUser(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	uid, err := s.localUser(r)
	if err != nil {
		return nil, err
	}
	var req putUserRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Password != nil {
		if err := accounts.CheckPasswordLength(*req.Password); err != nil {
			return nil, err
		}
	}
	if req.DisplayName != nil && len(*req.DisplayName) > 256 {
		return nil, mxhttp.InvalidParam("displayname too long")
	}
	ctx := r.Context()
	u, exists, err := s.accounts.GetUser(ctx, uid)
	if err != nil {
		return nil, err
	}
	if !exists {
		lp, _, _ := uid.Parse()
		pw := ""
		if req.Password != nil {
			pw = *req.Password
		}
		admin := req.Admin != nil && *req.Admin
		if _, err := s.accounts.CreateUser(ctx, lp, pw, admin); err != nil {
			return nil, err
		}
		s.log.Info("admin created user", "admin", sess.UserID, "user_id", uid)
	} else {
		if req.Password != nil {
			if *req.Password == "" {
				return nil, mxhttp.InvalidParam("password must not be empty")
			}
			logout := req.LogoutDevices == nil || *req.LogoutDevices
			if err := s.accounts.SetPassword(ctx, uid, *req.Password, logout, ""); err != nil {
				return nil, err
			}
		}
		if req.Admin != nil && *req.Admin != u.IsAdmin {
			if uid == sess.UserID && !*req.Admin {
				return nil, mxhttp.InvalidParam("you may not demote yourself")
			}
			if err := s.accounts.SetAdmin(ctx, uid, *req.Admin); err != nil {
				return nil, err
			}
		}
		if req.Deactivated != nil && *req.Deactivated != u.Deactivated {
			if *req.Deactivated {
				if err := s.accounts.Deactivate(ctx, uid, false); err != nil {
					return nil, err
				}
			} else if err := s.accounts.Reactivate(ctx, uid); err != nil {
				return nil, err
			}
		}
	}
	if req.Locked != nil {
		if err := s.setFlag(ctx, uid, "locked", *req.Locked); err != nil {
			return nil, err
		}
	}
	if req.DisplayName != nil {
		if err := s.accounts.SetProfileField(ctx, uid, "displayname", *req.DisplayName); err != nil {
			return nil, err
		}
	}
	if req.AvatarURL != nil {
		if err := s.accounts.SetProfileField(ctx, uid, "avatar_url", *req.AvatarURL); err != nil {
			return nil, err
		}
	}
	rec, err := s.userRecord(ctx, uid)
	if err != nil {
		return nil, err
	}
	if !exists {
		mxhttp.WriteJSON(w, http.StatusCreated, userJSON(rec, false))
		return nil, nil
	}
	return userJSON(rec, false), nil
}

func (s *Service) userDevices(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	devs, err := s.accounts.Devices(r.Context(), u.ID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(devs))
	for _, d := range devs {
		out = append(out, map[string]any{
			"device_id": d.DeviceID, "display_name": d.DisplayName, "last_seen_ip": orNull(d.LastSeenIP),
			"last_seen_ts": d.LastSeenTS, "last_seen_user_agent": nil, "user_id": u.ID,
		})
	}
	return map[string]any{"devices": out, "total": len(out)}, nil
}

func (s *Service) deactivate(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		Erase bool `json:"erase"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	if err := s.accounts.Deactivate(r.Context(), u.ID, req.Erase); err != nil {
		return nil, err
	}
	return map[string]string{"id_server_unbind_result": "success"}, nil
}

func (s *Service) resetPassword(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		NewPassword   string `json:"new_password"`
		LogoutDevices *bool  `json:"logout_devices"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.NewPassword == "" {
		return nil, mxhttp.MissingParam("missing new_password")
	}
	if err := accounts.CheckPasswordLength(req.NewPassword); err != nil {
		return nil, err
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	if err := s.accounts.SetPassword(r.Context(), u.ID, req.NewPassword, logout, ""); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) shadowBan(ban bool) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		u, err := s.existingUser(r)
		if err != nil {
			return nil, err
		}
		if err := s.setFlag(r.Context(), u.ID, "shadow_banned", ban); err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	}
}

// loginAs issues an access token for a new device of the user.
func (s *Service) loginAs(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		ValidUntilMS *int64 `json:"valid_until_ms"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	if u.ID == sess.UserID {
		return nil, mxhttp.InvalidParam("cannot use the admin API to log in as yourself")
	}
	if u.Deactivated {
		return nil, mxhttp.InvalidParam("the user is deactivated")
	}
	name := "Admin login by " + string(sess.UserID)
	res, err := s.accounts.NewSession(r.Context(), u.ID, "", &name, false)
	if err != nil {
		return nil, err
	}
	s.log.Info("admin logged in as user", "admin", sess.UserID, "user_id", u.ID, "device_id", res.DeviceID)
	return map[string]any{"access_token": res.AccessToken, "device_id": res.DeviceID}, nil
}

func (s *Service) userJoinedRooms(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	uid, err := s.localUser(r)
	if err != nil {
		return nil, err
	}
	joined := s.rooms.JoinedRooms(uid)
	if joined == nil {
		joined = []id.RoomID{}
	}
	return map[string]any{"joined_rooms": joined, "total": len(joined)}, nil
}

func (s *Service) getUserAdmin(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"admin": u.IsAdmin}, nil
}

func (s *Service) putUserAdmin(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		Admin *bool `json:"admin"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Admin == nil {
		return nil, mxhttp.MissingParam("missing admin")
	}
	u, err := s.existingUser(r)
	if err != nil {
		return nil, err
	}
	if u.ID == sess.UserID && !*req.Admin {
		return nil, mxhttp.InvalidParam("you may not demote yourself")
	}
	if err := s.accounts.SetAdmin(r.Context(), u.ID, *req.Admin); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) usernameAvailable(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	lp := strings.ToLower(r.URL.Query().Get("username"))
	if lp == "" {
		return nil, mxhttp.MissingParam("missing username")
	}
	if err := s.accounts.ValidateLocalpart(lp); err != nil {
		return nil, err
	}
	if _, taken, err := s.accounts.GetUser(r.Context(), s.accounts.UserID(lp)); err != nil {
		return nil, err
	} else if taken {
		return nil, accounts.ErrUserExists
	}
	return map[string]bool{"available": true}, nil
}

type createUsersRequest struct {
	Users []struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
	} `json:"users"`
	// GeneratePasswords is refused: see createUsers.
	GeneratePasswords bool `json:"generate_passwords"`
}

type createdUserJSON struct {
	UserID id.UserID `json:"user_id"`
	Admin  bool      `json:"admin"`
}

// createUsers creates many accounts, all or none (accounts.CreateUsers):
// each username is a localpart or a user ID of this server, each with the
// caller's password; the answer lists them in order.
//
// It generates no passwords: a generated password lives only in the
// answer, so a client that went away before reading it would leave
// accounts nobody can log in to. With the caller's passwords a lost
// answer loses nothing, and its retry answers M_USER_IN_USE naming the
// first account, which tells that the list was created. The CLI (user
// add-bulk --generate-passwords) generates them, as it writes them to its
// file before the accounts exist.
func (s *Service) createUsers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req createUsersRequest
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.GeneratePasswords {
		return nil, mxhttp.InvalidParam("generate_passwords is not offered over HTTP, where a lost answer would lose the passwords: send each account's password, or use matrixos user add-bulk --generate-passwords")
	}
	if len(req.Users) == 0 {
		return nil, mxhttp.InvalidParam("users must list at least one account")
	}
	news := make([]accounts.NewAccount, len(req.Users))
	for i, u := range req.Users {
		uid, err := s.accounts.ParseLocalUser(u.Username)
		if err != nil {
			return nil, err
		}
		news[i] = accounts.NewAccount{Localpart: uid.Localpart(), Password: u.Password, Admin: u.Admin}
	}
	created, err := s.accounts.CreateUsers(r.Context(), news, false)
	if err != nil {
		return nil, err
	}
	s.log.Info("admin created users", "admin", sess.UserID, "count", len(created))
	out := make([]createdUserJSON, len(created))
	for i, c := range created {
		out[i] = createdUserJSON{UserID: c.UserID, Admin: c.Admin}
	}
	return map[string]any{"users": out}, nil
}
