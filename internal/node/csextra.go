package node

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/spaces"
	"github.com/matrixos/matrixos/internal/storage"
)

// csExtraMigrations are the tables of the services wired by csExtraRoutes.
var csExtraMigrations = []storage.Migration{}

// csExtraRoutes builds and wires the rest of the Client-Server API: space
// hierarchy and room summaries, the small modules of clientapi, and the
// discovery documents this node has nothing to put in.
func (n *Node) csExtraRoutes(mux *http.ServeMux) {
	spaces.New(n.Accounts, n.Rooms).Routes(mux)
	n.Client.ExtraRoutes(mux)

	notFound := func(msg string) http.HandlerFunc {
		return mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
			return nil, mxhttp.NotFound("%s", msg)
		})
	}
	mux.HandleFunc("GET /.well-known/matrix/support", notFound("no server support information is configured"))
	mux.HandleFunc("GET /.well-known/matrix/policy_server", notFound("no policy server is configured"))
	// The spec's answer for a server that uses the legacy authentication
	// API rather than OAuth 2.0: clients detect it by this very error.
	mux.HandleFunc("GET /_matrix/client/v1/auth_metadata", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return nil, mxhttp.Unrecognized("legacy authentication is in use on this homeserver")
	}))
}

// stopCSExtra stops the background work of those services.
func (n *Node) stopCSExtra() {}
