package clientapi

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// getSSORedirect answers the SSO redirects: this server has no SSO
// identity provider (GET /login offers no m.login.sso flow).
func (s *Service) getSSORedirect(w http.ResponseWriter, r *http.Request) {
	mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		if idp := r.PathValue("idpId"); idp != "" {
			return nil, mxhttp.NotFound("unknown SSO identity provider %q: no SSO identity provider is configured", idp)
		}
		return nil, mxhttp.NotFound("no SSO identity provider is configured")
	})(w, r)
}
