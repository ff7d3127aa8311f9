package appservice

import (
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Routes registers the client endpoints only application services call,
// and the third-party lookups they answer.
// auth is the node's access token check (accounts.Service.Auth).
func (s *Service) Routes(mux *http.ServeMux, auth func(accounts.AuthedHandler) http.HandlerFunc) {
	mux.HandleFunc("POST /_matrix/client/v1/appservice/{appserviceId}/ping", auth(s.postPing))
	mux.HandleFunc("PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}", auth(s.putNetworkVisibility))
	s.thirdPartyRoutes(mux, auth)
}

// callerRegistration returns the registration of the appservice whose
// as_token authenticated sess, or M_FORBIDDEN.
func (s *Service) callerRegistration(sess *accounts.Session) (*Registration, error) {
	if sess.AppserviceID == "" {
		return nil, mxhttp.Forbidden("this endpoint is for application services; the access token does not belong to one")
	}
	reg := s.Registry.ByID(sess.AppserviceID)
	if reg == nil {
		return nil, mxhttp.Forbidden("the application service is no longer registered")
	}
	return reg, nil
}

// postPing calls the appservice's POST /_matrix/app/v1/ping and answers how
// long it took.
func (s *Service) postPing(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	reg, err := s.callerRegistration(sess)
	if err != nil {
		return nil, err
	}
	if r.PathValue("appserviceId") != reg.ID {
		return nil, mxhttp.Forbidden("the access token is not the as_token of appservice %q", r.PathValue("appserviceId"))
	}
	var req struct {
		TransactionID *string `json:"transaction_id"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	body := map[string]any{}
	if req.TransactionID != nil {
		body["transaction_id"] = *req.TransactionID
	}
	start := time.Now()
	status, answer, err := s.call(r.Context(), reg, http.MethodPost, "/_matrix/app/v1/ping", nil, body)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, badStatus(status, answer)
	}
	took := time.Since(start)
	for _, f := range s.OnPinged {
		f(reg.ID)
	}
	return map[string]int64{"duration_ms": took.Milliseconds()}, nil
}

// putNetworkVisibility publishes a room in (or removes it from) the room
// directory of one of the appservice's networks.
func (s *Service) putNetworkVisibility(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	reg, err := s.callerRegistration(sess)
	if err != nil {
		return nil, err
	}
	var req struct {
		Visibility string `json:"visibility"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		return nil, mxhttp.InvalidParam("visibility must be public or private")
	}
	networkID := r.PathValue("networkId")
	if networkID == "" {
		return nil, mxhttp.InvalidParam("missing network ID")
	}
	roomID := id.RoomID(r.PathValue("roomId"))
	public := req.Visibility == "public"
	if public {
		// Taking a room out of the directory is always allowed; only
		// publishing needs the room to be the appservice's business.
		if err := s.mayPublish(r.Context(), reg, roomID); err != nil {
			return nil, err
		}
	}
	return mxhttp.Empty, s.setNetworkPublished(r.Context(), reg.ID, networkID, roomID, public)
}
