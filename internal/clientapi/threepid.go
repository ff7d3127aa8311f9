package clientapi

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// This server validates no third-party identifiers (it sends no email or
// SMS and uses no identity server), so no account has any: the 3PID
// endpoints answer with the spec's errors for that case, and unbinding
// reports "no-support".

func (s *Service) threepidRoutes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	a := s.accounts.Auth
	mux.HandleFunc("GET "+v3+"/account/3pid", a(s.get3PIDs))
	mux.HandleFunc("POST "+v3+"/account/3pid/add", a(s.add3PID))
	mux.HandleFunc("POST "+v3+"/account/3pid/bind", a(s.bind3PID))
	mux.HandleFunc("POST "+v3+"/account/3pid/unbind", a(s.unbind3PID))
	mux.HandleFunc("POST "+v3+"/account/3pid/delete", a(s.unbind3PID))
	for _, medium := range []string{"email", "msisdn"} {
		mux.HandleFunc("POST "+v3+"/account/3pid/"+medium+"/requestToken", mxhttp.Handle(s.requestToken(medium, errAdd3PID)))
		mux.HandleFunc("POST "+v3+"/register/"+medium+"/requestToken", mxhttp.Handle(s.requestToken(medium, errRegister3PID)))
		mux.HandleFunc("POST "+v3+"/account/password/"+medium+"/requestToken", mxhttp.Handle(s.requestToken(medium, errReset3PID)))
	}
}

// Errors of the requestToken endpoints: adding a 3PID to an account, using
// one to register, and using one to reset a password.
var (
	errAdd3PID = &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_MEDIUM_NOT_SUPPORTED",
		Message: "this server does not support adding third-party identifiers"}
	errRegister3PID = mxhttp.ThreepidDenied("this server does not permit registering with a third-party identifier")
	errReset3PID    = &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_NOT_FOUND",
		Message: "no account has this third-party identifier"}
	// errThirdPartyInvite answers an invite by third-party identifier.
	errThirdPartyInvite = mxhttp.Forbidden("inviting by third-party identifier needs an identity server, and this server uses none")
)

func (s *Service) get3PIDs(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return map[string]any{"threepids": []any{}}, nil
}

// requestToken checks the request, then refuses it with errcode.
func (s *Service) requestToken(medium string, refusal *mxhttp.Error) mxhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req struct {
			ClientSecret string `json:"client_secret"`
			SendAttempt  *int64 `json:"send_attempt"`
			Email        string `json:"email"`
			Country      string `json:"country"`
			PhoneNumber  string `json:"phone_number"`
		}
		if err := mxhttp.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		missing := ""
		switch {
		case req.ClientSecret == "":
			missing = "client_secret"
		case req.SendAttempt == nil:
			missing = "send_attempt"
		case medium == "email" && req.Email == "":
			missing = "email"
		case medium == "msisdn" && req.Country == "":
			missing = "country"
		case medium == "msisdn" && req.PhoneNumber == "":
			missing = "phone_number"
		}
		if missing != "" {
			return nil, mxhttp.MissingParam("missing %s", missing)
		}
		return nil, refusal
	}
}

func (s *Service) add3PID(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		ClientSecret string `json:"client_secret"`
		SID          string `json:"sid"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ClientSecret == "" || req.SID == "" {
		return nil, mxhttp.MissingParam("client_secret and sid are required")
	}
	// No validation session can exist: requestToken never starts one.
	return nil, &mxhttp.Error{Status: http.StatusForbidden, Code: "M_THREEPID_AUTH_FAILED",
		Message: "unknown validation session: this server does not validate third-party identifiers"}
}

func (s *Service) bind3PID(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		ClientSecret  string `json:"client_secret"`
		IDServer      string `json:"id_server"`
		IDAccessToken string `json:"id_access_token"`
		SID           string `json:"sid"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ClientSecret == "" || req.IDServer == "" || req.IDAccessToken == "" || req.SID == "" {
		return nil, mxhttp.MissingParam("client_secret, id_server, id_access_token and sid are required")
	}
	return nil, &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_SERVER_NOT_TRUSTED",
		Message: "this server does not use identity servers"}
}

// unbind3PID serves unbind and delete: the account has no such 3PID and
// no identity server is known, so the result is "no-support".
func (s *Service) unbind3PID(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var req struct {
		IDServer string `json:"id_server"`
		Medium   string `json:"medium"`
		Address  string `json:"address"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Medium == "" || req.Address == "" {
		return nil, mxhttp.MissingParam("medium and address are required")
	}
	if req.Medium != "email" && req.Medium != "msisdn" {
		return nil, mxhttp.InvalidParam("medium must be email or msisdn")
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}
