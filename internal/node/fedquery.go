package node

import (
	"net/http"

	"github.com/matrixos/matrixos/internal/federation"
)

// federationQueries wires the Server-Server endpoints that answer
// questions about this server's data (profiles, aliases, the room
// directory, OpenID tokens, media, space hierarchies) into the federation listener, and lets
// the client API ask other servers the same questions. Nothing happens
// while federation is off.
func (n *Node) federationQueries() {
	f := n.Federation
	if f == nil {
		return
	}
	n.Accounts.UseFederation(f.Client)
	n.Accounts.FederationRoutes(f.Handle)
	n.Client.UseFederation(f.Client)
	n.Client.FederationRoutes(f.Handle)
	n.csExtra.openid.FederationRoutes(f.HandleUnauthenticated)
	n.Media.UseFederation(f.Client)
	n.Media.FederationRoutes(f.Handle)
	n.csExtra.spaces.UseFederation(f.Client, n.cfg.ServerName, n.log)
	n.csExtra.spaces.FederationRoutes(f.Handle, func(r *http.Request) string { return federation.Origin(r.Context()) })
}
