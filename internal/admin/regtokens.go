package admin

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

func (s *Service) tokenRoutes(mux *http.ServeMux) {
	const v1 = "/_synapse/admin/v1/registration_tokens"
	mux.HandleFunc("GET "+v1, s.admin(s.listTokens))
	mux.HandleFunc("POST "+v1+"/new", s.admin(s.newToken))
	mux.HandleFunc("GET "+v1+"/{token}", s.admin(s.getToken))
	mux.HandleFunc("PUT "+v1+"/{token}", s.admin(s.putToken))
	mux.HandleFunc("DELETE "+v1+"/{token}", s.admin(s.deleteToken))
}

func (s *Service) listTokens(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	valid, err := boolParam(r, "valid")
	if err != nil {
		return nil, err
	}
	all, err := s.accounts.ListRegistrationTokens(r.Context())
	if err != nil {
		return nil, err
	}
	out := []accounts.RegistrationToken{}
	now := nowMS()
	for i := range all {
		if valid == nil || all[i].Valid(now) == *valid {
			out = append(out, all[i])
		}
	}
	return map[string]any{"registration_tokens": out}, nil
}

// checkLimits validates uses_allowed and expiry_time.
func checkLimits(uses, expiry *int64) error {
	if uses != nil && *uses < 0 {
		return mxhttp.InvalidParam("uses_allowed must be a non-negative integer or null")
	}
	if expiry != nil && *expiry < time.Now().UnixMilli() {
		return mxhttp.InvalidParam("expiry_time must not be in the past")
	}
	return nil
}

func (s *Service) newToken(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		Token       *string `json:"token"`
		UsesAllowed *int64  `json:"uses_allowed"`
		ExpiryTime  *int64  `json:"expiry_time"`
		Length      *int    `json:"length"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := checkLimits(req.UsesAllowed, req.ExpiryTime); err != nil {
		return nil, err
	}
	tok := ""
	if req.Token != nil {
		tok = *req.Token
		if tok == "" {
			return nil, mxhttp.InvalidParam("token must be 1 to 64 characters from A-Z, a-z, 0-9, ., _, ~ and -")
		}
	} else {
		n := 16
		if req.Length != nil {
			n = *req.Length
		}
		if n < 1 || n > 64 {
			return nil, mxhttp.InvalidParam("length must be between 1 and 64")
		}
		tok = accounts.RandomRegistrationToken(n)
	}
	t, err := s.accounts.CreateRegistrationToken(r.Context(), accounts.RegistrationToken{Token: tok, UsesAllowed: req.UsesAllowed, ExpiryTime: req.ExpiryTime})
	if err != nil {
		return nil, err
	}
	s.log.Info("registration token created", "admin", sess.UserID)
	return t, nil
}

func (s *Service) getToken(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return s.accounts.GetRegistrationToken(r.Context(), r.PathValue("token"))
}

// putToken changes uses_allowed and expiry_time; a field that is present
// and null clears the limit, an absent one is left alone.
func (s *Service) putToken(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req map[string]json.RawMessage
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var u accounts.RegistrationTokenUpdate
	for field, dst := range map[string]**int64{"uses_allowed": &u.UsesAllowed, "expiry_time": &u.ExpiryTime} {
		raw, ok := req[field]
		if !ok {
			continue
		}
		if field == "uses_allowed" {
			u.SetUsesAllowed = true
		} else {
			u.SetExpiryTime = true
		}
		if string(raw) == "null" {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, mxhttp.InvalidParam("%s must be an integer or null", field)
		}
		*dst = &n
	}
	if err := checkLimits(u.UsesAllowed, u.ExpiryTime); err != nil {
		return nil, err
	}
	return s.accounts.UpdateRegistrationToken(r.Context(), r.PathValue("token"), u)
}

func (s *Service) deleteToken(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if err := s.accounts.DeleteRegistrationToken(r.Context(), r.PathValue("token")); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}
