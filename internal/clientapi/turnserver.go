package clientapi

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
)

// getTurnServer answers with no TURN server: none is configured, and an
// empty object tells clients to do without.
func (s *Service) getTurnServer(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return map[string]any{}, nil
}
