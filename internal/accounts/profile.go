package accounts

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// Profile field limits.
const (
	maxProfileBytes    = 65536
	maxProfileKeyBytes = 255
)

func (s *Service) profileRoutes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	mux.HandleFunc("GET "+v3+"/profile/{userId}", mxhttp.Handle(s.getProfile))
	mux.HandleFunc("GET "+v3+"/profile/{userId}/{keyName}", mxhttp.Handle(s.getProfileField))
	mux.HandleFunc("PUT "+v3+"/profile/{userId}/{keyName}", s.Auth(s.putProfileField))
	mux.HandleFunc("DELETE "+v3+"/profile/{userId}/{keyName}", s.Auth(s.deleteProfileField))
}

// Profile returns a user's profile fields (values are JSON). ok is false
// when the user does not exist.
func (s *Service) Profile(ctx context.Context, uid id.UserID) (map[string]json.RawMessage, bool, error) {
	rows, err := s.db.Query(ctx, "SELECT field, value FROM profiles WHERE user_id = $1", uid)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, false, err
		}
		if k == "displayname" || k == "avatar_url" {
			b, _ := json.Marshal(v)
			out[k] = b
		} else {
			out[k] = json.RawMessage(v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(out) == 0 {
		if _, ok, err := s.GetUser(ctx, uid); err != nil || !ok {
			return nil, false, err
		}
	}
	return out, true, nil
}

// DisplayName returns a user's display name and avatar URL ("" if unset).
func (s *Service) DisplayName(ctx context.Context, uid id.UserID) (name, avatar string) {
	rows, err := s.db.Query(ctx, "SELECT field, value FROM profiles WHERE user_id = $1 AND field IN ('displayname', 'avatar_url')", uid)
	if err != nil {
		return "", ""
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		rows.Scan(&k, &v)
		if k == "displayname" {
			name = v
		} else {
			avatar = v
		}
	}
	return name, avatar
}

// SetProfileField stores one profile field. displayname and avatar_url are
// plain strings; other fields hold JSON. An empty displayname/avatar_url
// removes it. The ProfileChanged hooks run for displayname and avatar_url.
func (s *Service) SetProfileField(ctx context.Context, uid id.UserID, field, value string) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if value == "" && (field == "displayname" || field == "avatar_url") {
			_, err := tx.Exec(ctx, "DELETE FROM profiles WHERE user_id = $1 AND field = $2", uid, field)
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO profiles (user_id, field, value) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value`, uid, field, value)
		return err
	})
	if err != nil {
		return err
	}
	if field == "displayname" || field == "avatar_url" {
		name, avatar := s.DisplayName(ctx, uid)
		for _, h := range s.Hooks.ProfileChanged {
			h(ctx, uid, name, avatar)
		}
	}
	return nil
}

func (s *Service) getProfile(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.pathProfile(r)
}

func (s *Service) getProfileField(w http.ResponseWriter, r *http.Request) (any, error) {
	key := r.PathValue("keyName")
	p, err := s.pathProfile(r)
	if err != nil {
		return nil, err
	}
	v, ok := p[key]
	switch {
	case ok:
		return map[string]json.RawMessage{key: v}, nil
	case key == "displayname" || key == "avatar_url":
		// The two fields every server has always had: one a user has
		// not set is answered as empty, as Synapse does, rather than
		// 404. mautrix bridges read the current avatar before setting
		// one and give up on any error, so with a 404 neither their bot
		// nor any ghost would ever get an avatar.
		return map[string]json.RawMessage{}, nil
	default:
		return nil, mxhttp.NotFound("profile field not set")
	}
}

// pathProfile returns the profile of the path's user, or M_NOT_FOUND. A
// user of another server is looked up there (see UseFederation).
func (s *Service) pathProfile(r *http.Request) (map[string]json.RawMessage, error) {
	uid := id.UserID(r.PathValue("userId"))
	if s.isRemote(uid) {
		return s.remoteProfile(r.Context(), uid)
	}
	p, ok, err := s.Profile(r.Context(), uid)
	if err == nil && !ok && s.Appservices != nil {
		var created bool
		if created, err = s.Appservices.QueryUser(r.Context(), uid); created {
			p, ok, err = s.Profile(r.Context(), uid) // an appservice created the user
		}
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("profile not found")
	}
	return p, nil
}

// profileKeyRE is the spec's grammar for profile field names.
var profileKeyRE = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// profileTarget returns the user and field a profile change names, after
// checking that sess may change them and that the field name is valid.
func profileTarget(r *http.Request, sess *Session) (id.UserID, string, error) {
	uid := id.UserID(r.PathValue("userId"))
	key := r.PathValue("keyName")
	if uid != sess.UserID && !sess.IsAdmin {
		return "", "", mxhttp.Forbidden("cannot change another user's profile")
	}
	return uid, key, checkProfileKey(key)
}

// checkProfileKey validates a profile field name from the request path.
func checkProfileKey(key string) error {
	if len(key) > maxProfileKeyBytes {
		return &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_KEY_TOO_LARGE", Message: "profile field names are limited to 255 bytes"}
	}
	if !profileKeyRE.MatchString(key) {
		return mxhttp.InvalidParam("invalid profile field name %q", key)
	}
	return nil
}

func (s *Service) putProfileField(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	uid, key, err := profileTarget(r, sess)
	if err != nil {
		return nil, err
	}
	body, err := mxhttp.ReadBody(r, 2*maxProfileBytes)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := mxhttp.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	raw, ok := obj[key]
	if !ok {
		return nil, mxhttp.MissingParam("body must contain the field %q", key)
	}
	if len(obj) != 1 {
		return nil, mxhttp.BadJSON("body must contain only the field %q", key)
	}
	value := string(raw)
	if key == "displayname" || key == "avatar_url" {
		var str *string
		if err := json.Unmarshal(raw, &str); err != nil {
			return nil, mxhttp.BadJSON("%s must be a string", key)
		}
		value = ""
		if str != nil {
			value = *str
		}
		// An avatar_url that is no mxc:// URI is kept, as other servers
		// keep it: the spec's "MUST be an MXC URI" binds the client, and
		// clients resolve avatars only through the media repository, so
		// they ignore any other value rather than fetch it.
		if len(value) > 1024 {
			return nil, mxhttp.InvalidParam("%s is limited to 1024 bytes", key)
		}
	}
	if uid != sess.UserID {
		if _, ok, err := s.GetUser(r.Context(), uid); err != nil {
			return nil, err
		} else if !ok {
			return nil, mxhttp.NotFound("no such user")
		}
	}
	cur, _, err := s.Profile(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		cur = map[string]json.RawMessage{}
	}
	cur[key] = raw
	if b, _ := json.Marshal(cur); len(b) > maxProfileBytes {
		return nil, &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_PROFILE_TOO_LARGE", Message: "profiles are limited to 64 KiB"}
	}
	if err := s.SetProfileField(r.Context(), uid, key, value); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

func (s *Service) deleteProfileField(w http.ResponseWriter, r *http.Request, sess *Session) (any, error) {
	uid, key, err := profileTarget(r, sess)
	if err != nil {
		return nil, err
	}
	if key == "displayname" || key == "avatar_url" {
		if err := s.SetProfileField(r.Context(), uid, key, ""); err != nil {
			return nil, err
		}
		return mxhttp.Empty, nil
	}
	err = s.db.Write(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.Exec(r.Context(), "DELETE FROM profiles WHERE user_id = $1 AND field = $2", uid, key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}
