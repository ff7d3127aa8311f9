package node

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/mxhttp"
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
	n.Keys.EnableFederation(n.Federation.Client, nil)
	n.Keys.FederationRoutes(n.Federation.Handle)
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
