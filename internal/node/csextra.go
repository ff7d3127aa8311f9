package node

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/spaces"
	"github.com/matrixos/matrixos/internal/storage"
)

// csExtraMigrations are the tables of the services wired by csExtraRoutes.
var csExtraMigrations = []storage.Migration{}

// csExtraRoutes builds and wires the rest of the Client-Server API: space
// hierarchy and room summaries.
func (n *Node) csExtraRoutes(mux *http.ServeMux) {
	spaces.New(n.Accounts, n.Rooms).Routes(mux)
}

// stopCSExtra stops the background work of those services.
func (n *Node) stopCSExtra() {}
