package clientapi

import (
	"net/http"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// LoginTokenLifetime is how long a token from /login/get_token is valid.
const LoginTokenLifetime = 2 * time.Minute

// postGetLoginToken issues a single-use m.login.token for the caller, after
// User-Interactive Authentication (a fresh one every time: UIA sessions are
// pinned to one request and end when it succeeds).
func (s *Service) postGetLoginToken(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		Auth *accounts.AuthDict `json:"auth"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.accounts.SessionUIA(r, sess, req.Auth); err != nil {
		return nil, err
	}
	if sess.IsGuest {
		return nil, mxhttp.GuestAccessDeny("guests cannot generate login tokens")
	}
	tok, err := s.accounts.CreateLoginToken(r.Context(), sess.UserID, LoginTokenLifetime)
	if err != nil {
		return nil, err
	}
	return map[string]any{"login_token": tok, "expires_in_ms": LoginTokenLifetime.Milliseconds()}, nil
}
