package clientapi

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Third-party lookups are answered by the application services that
// bridge each protocol. None is registered, so no protocol is known and
// reverse lookups find nothing.

func (s *Service) getThirdPartyProtocols(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return map[string]any{}, nil
}

// getThirdPartyProtocol serves the protocol metadata and the location and
// user lookups within a protocol.
func (s *Service) getThirdPartyProtocol(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return nil, mxhttp.NotFound("no application service provides the protocol %q", r.PathValue("protocol"))
}

// getThirdPartyReverse serves the lookups by Matrix room alias or user ID
// (param names the query parameter).
func (s *Service) getThirdPartyReverse(param string) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if r.URL.Query().Get(param) == "" {
			return nil, mxhttp.MissingParam("missing %s", param)
		}
		return []any{}, nil
	}
}
