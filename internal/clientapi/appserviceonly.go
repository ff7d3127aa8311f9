package clientapi

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// appserviceOnly answers the endpoints that only application services may
// call (the ping and the per-network room directory): no application
// service is registered, so no access token belongs to one.
func (s *Service) appserviceOnly(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return nil, mxhttp.Forbidden("this endpoint is for application services; the access token does not belong to one")
}
