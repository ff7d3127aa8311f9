package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/admin"
	"github.com/matrixos/matrixos/internal/config"
	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/threading"
)

// FederationOptions derives the federation settings from the config and
// the signing key.
func FederationOptions(cfg config.Config, keyID id.KeyID, key ed25519.PrivateKey) fed.Options {
	return fed.Options{
		ServerName: cfg.ServerName,
		Key: &federation.SigningKey{
			ID:   keyID,
			Pub:  id.SigningKey(base64.RawStdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))),
			Priv: key,
		},
		Notaries:             cfg.TrustedKeyServers,
		AllowPrivateNetworks: cfg.AllowPrivateNetworks,
		ExtraCAFile:          cfg.FederationCA,
		WellKnownServer:      wellKnownServer(cfg),
		Version:              Version,
	}
}

// wellKnownServer is what /.well-known/matrix/server delegates to: the
// server name when it has a port, else its host with the federation
// listener's port.
func wellKnownServer(cfg config.Config) string {
	name := cfg.ServerName
	if _, _, err := net.SplitHostPort(name); err == nil {
		return name
	}
	_, port, err := net.SplitHostPort(cfg.FederationListen)
	if err != nil || port == "" || port == "0" {
		port = "8448"
	}
	return net.JoinHostPort(strings.Trim(name, "[]"), port)
}

// wireFederation connects the services that talk to other servers to
// the federation service: their Server-Server endpoints, outbound client
// and EDUs.
func (n *Node) wireFederation() {
	// Remote room events are checked with keys and events fetched
	// through the federation client; without it they are refused.
	n.Rooms.Remote = n.Federation.RoomRemote()
	n.Rooms.StateBatch = n.cfg.FederationStateBatch
	f := n.Federation
	f.InviteBlocked = n.AccountData.InviteBlocked
	f.LocalUserActive = n.Accounts.Active
	n.Keys.EnableFederation(f.Client, f.Outbox)
	n.Keys.FederationRoutes(f.Handle)
	n.Ephemeral.EnableFederation(f.Outbox, n.cfg.FederationPresence)
	for _, handlers := range []map[string]func(context.Context, string, json.RawMessage) error{
		n.Keys.EDUHandlers(), n.Ephemeral.EDUHandlers(),
	} {
		for eduType, h := range handlers {
			f.HandleEDU(eduType, h)
		}
	}
	n.queueLocalEvents()
	n.Federation.ServeRooms(n.Rooms)
	n.Client.UseRemoteRooms(n.Federation)
}

// wireThreadingFederation serves MSC2836's federated
// /event_relationships and lets client walks ask other servers with it.
func (n *Node) wireThreadingFederation(th *threading.Service) {
	f := n.Federation
	ask := func(ctx context.Context, server string, body, answer any) error {
		return f.Client.MakeRequest(ctx, server, true, http.MethodPost, federation.URLPath{"unstable", "event_relationships"}, body, answer)
	}
	th.EnableFederation(ask, f.Handle, f.RoomAccess, fed.AuthenticatedOrigin)
}

// startFederation opens the federation listener: HTTPS with tls_cert and
// tls_key, plain HTTP without them.
func (n *Node) startFederation() error {
	ln := n.FederationListener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", n.cfg.FederationListen)
		if err != nil {
			return fmt.Errorf("listen on %s (federation_listen): %w", n.cfg.FederationListen, err)
		}
	}
	n.FederationAddr = ln.Addr().String()
	if err := n.Federation.Outbox.Start(context.Background()); err != nil {
		return err
	}
	srv := n.newServer(mxhttp.Recover(n.log, mxhttp.CheckRequest(n.Federation.Handler())))
	go func() {
		var err error
		if n.cfg.TLSCert != "" {
			err = srv.ServeTLS(ln, n.cfg.TLSCert, n.cfg.TLSKey)
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("federation listener failed", "err", err)
		}
	}()
	return nil
}

// clientNotFound answers what the client listener does not serve. A
// Server-Server path (/_matrix/federation/, /_matrix/key/), which the
// federation listener serves, asked with a method that listener does not
// take for it either is 405 M_UNRECOGNIZED, as that listener answers;
// anything else is 404 M_UNRECOGNIZED.
func (n *Node) clientNotFound(w http.ResponseWriter, r *http.Request) {
	if n.Federation != nil && isServerServerPath(r.URL.Path) {
		if allowed := n.Federation.AllowedMethods(r); len(allowed) > 0 && !slices.Contains(allowed, r.Method) {
			mxhttp.MethodNotAllowed(w, r, allowed)
			return
		}
	}
	mxhttp.NotFoundHandler(w, r)
}

// isServerServerPath reports whether path is under a prefix of the
// Server-Server API.
func isServerServerPath(path string) bool {
	return strings.HasPrefix(path, "/_matrix/federation/") || strings.HasPrefix(path, "/_matrix/key/")
}

// queueLocalEvents queues every event a local user sends, in the
// transaction that stores it, for the other servers in its room.
func (n *Node) queueLocalEvents() {
	n.Rooms.OnPersist = append(n.Rooms.OnPersist, func(ctx context.Context, tx *storage.Tx, ev *rooms.Event, r *rooms.RoomInfo) error {
		if ev.Sender.Homeserver() != n.cfg.ServerName {
			return nil
		}
		dests := eventDestinations(ev, r)
		if len(dests) == 0 {
			return nil
		}
		return n.Federation.Outbox.QueuePDU(ctx, tx, dests, ev.JSON)
	})
}

// eventDestinations are the servers an event goes to: those with a member
// joined to the room after it, and, for a membership event about a user
// of another server (an invite, a kick, a ban), that user's server. An
// event taken from another server's answer (the join send_join returned)
// goes nowhere: that server has it and sends it to the room's other
// servers, as the spec has the resident server do. The list may hold this
// server; the outbox leaves it out.
func eventDestinations(ev *rooms.Event, r *rooms.RoomInfo) []string {
	if ev.ReceivedFrom != "" {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(server string) {
		if server != "" && !seen[server] {
			seen[server] = true
			out = append(out, server)
		}
	}
	for _, server := range r.JoinedServers() {
		add(server)
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		add(id.UserID(*ev.StateKey).Homeserver())
	}
	return out
}

// outboxAdmin adapts the outbound queue to what the admin API shows.
type outboxAdmin struct{ *fed.Outbox }

func (o outboxAdmin) Destinations() []admin.Destination {
	var out []admin.Destination
	for _, d := range o.Outbox.Destinations() {
		a := admin.Destination{
			Destination: d.Destination, LastSuccessTS: millis(d.LastSuccess),
			QueueDepth: d.QueueDepth, Failures: d.Failures, Down: d.Down,
		}
		if !d.FailedAt.IsZero() {
			failed := d.FailedAt.UnixMilli()
			a.FailureTS = &failed
			a.RetryLastTS = failed
			a.RetryInterval = max(d.RetryAt.Sub(d.FailedAt).Milliseconds(), 0)
		}
		out = append(out, a)
	}
	return out
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
