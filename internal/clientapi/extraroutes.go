package clientapi

import "net/http"

// ExtraRoutes registers the endpoints of the smaller Client-Server modules
// that need no state of their own: third-party identifiers on a server
// without an identity server, SSO redirects (no SSO provider), TURN
// servers (none), login-token generation, and mutual rooms.
// internal/appservice serves the third-party lookups and the
// application-service-only endpoints.
func (s *Service) ExtraRoutes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	const v1 = "/_matrix/client/v1"
	a := s.accounts.Auth
	s.threepidRoutes(mux)

	mux.HandleFunc("GET "+v3+"/login/sso/redirect", s.getSSORedirect)
	mux.HandleFunc("GET "+v3+"/login/sso/redirect/{idpId}", s.getSSORedirect)
	mux.HandleFunc("GET "+v3+"/voip/turnServer", a(s.getTurnServer))
	mux.HandleFunc("POST "+v1+"/login/get_token", a(s.postGetLoginToken))
	mux.HandleFunc("GET "+v1+"/mutual_rooms", a(s.getMutualRooms))
}
