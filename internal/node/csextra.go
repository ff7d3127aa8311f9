package node

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"slices"

	"github.com/matrixos/matrixos/internal/delayed"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/oauth"
	"github.com/matrixos/matrixos/internal/openid"
	"github.com/matrixos/matrixos/internal/peek"
	"github.com/matrixos/matrixos/internal/pushers"
	"github.com/matrixos/matrixos/internal/rendezvous"
	"github.com/matrixos/matrixos/internal/spaces"
	"github.com/matrixos/matrixos/internal/threading"
	"github.com/matrixos/matrixos/internal/threadsubs"
)

// csExtraMigrations are the tables of the services wired by csExtraRoutes.
var csExtraMigrations = slices.Concat(
	pushers.Migrations,
	openid.Migrations,
	delayed.Migrations,
	threadsubs.Migrations,
	threading.Migrations,
	oauth.Migrations,
)

// csExtra holds the services wired by csExtraRoutes.
type csExtra struct {
	pushers *pushers.Service
	spaces  *spaces.Service
	openid  *openid.Service
	delayed *delayed.Service
	oauth   *oauth.Service
	// serverKey is the server's signing key, from which oauth derives
	// the key of its ID tokens.
	serverKey ed25519.PrivateKey
}

// csExtraRoutes builds and wires the rest of the Client-Server API: space
// hierarchy and room summaries, pushers and push delivery, OpenID tokens,
// thread subscriptions, MSC2836's threading relationships,
// room previews (initialSync and /events), the small modules of clientapi,
// the discovery documents this node has nothing to put in, the OAuth
// 2.0 API and the rendezvous sessions of QR code login (MSC4108).
func (n *Node) csExtraRoutes(mux *http.ServeMux) {
	n.csExtra.spaces = spaces.New(n.Accounts, n.Rooms)
	n.csExtra.spaces.ResolveAlias = n.Client.ResolveAlias
	n.csExtra.spaces.Routes(mux)
	n.Client.ExtraRoutes(mux)
	n.wirePushers(mux)
	n.csExtra.openid = openid.New(n.DB, n.Accounts, n.cfg.ServerName)
	n.csExtra.openid.Routes(mux)
	n.wireDelayed(mux)
	n.wireThreadSubscriptions(mux)
	th := threading.New(n.DB, n.Accounts, n.Rooms)
	n.Rooms.OnPersist = append(n.Rooms.OnPersist, th.OnPersist)
	n.Rooms.OnBackfill = append(n.Rooms.OnBackfill, th.OnBackfill)
	n.Rooms.OnReject = append(n.Rooms.OnReject, th.OnReject)
	if n.Federation != nil {
		n.wireThreadingFederation(th)
	}
	n.Rooms.OnPurge = append(n.Rooms.OnPurge, th.PurgeRoom)
	th.Routes(mux)
	pk := peek.New(n.DB, n.Accounts, n.Rooms)
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, pk.OnEvent)
	pk.Routes(mux)

	notFound := func(msg string) http.HandlerFunc {
		return mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
			return nil, mxhttp.NotFound("%s", msg)
		})
	}
	mux.HandleFunc("GET /.well-known/matrix/support", notFound("no server support information is configured"))
	mux.HandleFunc("GET /.well-known/matrix/policy_server", notFound("no policy server is configured"))
	n.wireOAuth(mux)
	rendezvous.New(rendezvous.Options{BaseURL: n.publicURL}).Routes(mux)
}

// wireThreadSubscriptions serves thread subscriptions (MSC4306): their
// endpoints, the push rules' condition and sliding sync's extension.
func (n *Node) wireThreadSubscriptions(mux *http.ServeMux) {
	ts := threadsubs.New(n.DB, n.Accounts, n.Rooms, n.Sync.Notifier.Wake)
	if err := ts.Load(context.Background()); err != nil {
		n.log.Error("load thread subscriptions", "err", err)
	}
	n.Push.ThreadSubscribed = ts.Subscribed
	n.Sync.ThreadSubscriptions = ts.Changes
	ts.Routes(mux)
}

// wireOAuth serves the OAuth 2.0 API (auth_metadata and the authorization
// server with its pages) beside the legacy login API.
func (n *Node) wireOAuth(mux *http.ServeMux) {
	o := oauth.New(n.DB, n.log, n.Accounts, oauth.Options{
		BaseURL: n.publicURL, ServerKey: n.csExtra.serverKey, AccessTokenLifetime: n.cfg.AccessTokenLifetime,
	})
	n.Accounts.Hooks.DeviceDeleted = append(n.Accounts.Hooks.DeviceDeleted, o.OnDeviceDeleted)
	n.Accounts.Hooks.Deactivated = append(n.Accounts.Hooks.Deactivated, o.OnDeactivated)
	n.Accounts.OAuth = o
	n.csExtra.oauth = o
	o.Routes(mux)
}

// publicURL is the URL clients reach the node at: public_baseurl, or the
// client listener's address once it listens.
func (n *Node) publicURL() string {
	if n.cfg.PublicBaseURL != "" || n.Addr == "" {
		return n.cfg.BaseURL()
	}
	return "http://" + n.Addr
}

// wirePushers starts pushers and push delivery.
func (n *Node) wirePushers(mux *http.ServeMux) {
	opts := pushers.Options{AllowPrivateNetworks: n.cfg.AllowPrivateNetworks}
	p, err := pushers.New(n.DB, n.log, n.Accounts, n.Rooms, n.Push, opts)
	if err != nil {
		// A bad allow_private_networks entry (config validation reports
		// it): push gateways get no exception.
		n.log.Error("push gateways: allow_private_networks ignored", "err", err)
		opts.AllowPrivateNetworks = nil
		p, _ = pushers.New(n.DB, n.log, n.Accounts, n.Rooms, n.Push, opts)
	}
	if err := p.Load(context.Background()); err != nil {
		n.log.Error("load pushers", "err", err)
	}
	n.csExtra.pushers = p
	n.Push.OnNotify = append(n.Push.OnNotify, p.OnNotify)
	n.Rooms.OnPurge = append(n.Rooms.OnPurge, p.PurgeRoom)
	n.Accounts.Hooks.DeviceDeleted = append(n.Accounts.Hooks.DeviceDeleted, p.OnDeviceDeleted)
	n.Accounts.Hooks.Deactivated = append(n.Accounts.Hooks.Deactivated, p.OnDeactivated)
	p.Routes(mux)
	p.Start()
}

// Pushers returns the service that owns pushers and push delivery.
func (n *Node) Pushers() *pushers.Service { return n.csExtra.pushers }

// stopCSExtra stops the background work of those services.
func (n *Node) stopCSExtra() {
	if n.csExtra.delayed != nil {
		n.csExtra.delayed.Stop()
	}
	if n.csExtra.pushers != nil {
		n.csExtra.pushers.Stop()
	}
}

// wireDelayed serves delayed events (MSC4140) and starts sending them.
func (n *Node) wireDelayed(mux *http.ServeMux) {
	d := delayed.New(n.DB, n.log, n.Rooms, n.cfg.MaxEventDelay)
	if err := d.Load(context.Background()); err != nil {
		n.log.Error("load delayed events", "err", err)
	}
	n.csExtra.delayed = d
	n.Client.Delayed = d
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, d.OnEvent)
	d.Routes(mux, n.Accounts)
	d.Start()
}
