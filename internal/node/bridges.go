package node

import (
	"context"
	"errors"
	"net"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/discord"
	"github.com/matrixos/matrixos/internal/bridges/slack"
	"github.com/matrixos/matrixos/internal/bridges/telegram"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// BuiltinBridges are the bridges the node runs in-process, each a bridgev2
// network connector (internal/bridges/...).
func BuiltinBridges() []bridges.Kind {
	return []bridges.Kind{discord.Kind(), slack.Kind(), telegram.Kind()}
}

// BridgesOptions derives the bridge manager's settings from the node.
func (n *Node) bridgesOptions() bridges.Options {
	return bridges.Options{
		DataDir: n.cfg.DataDir, ServerName: n.cfg.ServerName, Kinds: BuiltinBridges(),
		Accounts: n.Accounts, ReloadAppservices: n.Appservices.Reload,
		// The queue is made after the manager.
		PauseAppservice: func(id string, paused bool) { n.AppserviceQueue.SetPaused(id, paused) },
	}
}

// loopbackURL is the client API's URL for the bridges: the listener's
// address, with a wildcard host replaced by loopback.
func loopbackURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// bridgesAdmin adapts the bridge manager to the admin API.
type bridgesAdmin struct{ m *bridges.Manager }

func (b bridgesAdmin) ListBridges(ctx context.Context) (any, error) {
	list, err := b.m.List(ctx)
	return map[string]any{"bridges": list}, bridgeError(err)
}

func (b bridgesAdmin) Bridge(ctx context.Context, name string) (any, error) {
	st, err := b.m.Status(ctx, name)
	return st, bridgeError(err)
}

func (b bridgesAdmin) EnableBridge(ctx context.Context, name string) (any, error) {
	st, err := b.m.Enable(ctx, name, "")
	return st, bridgeError(err)
}

func (b bridgesAdmin) DisableBridge(ctx context.Context, name string) (any, error) {
	st, err := b.m.Disable(ctx, name)
	return st, bridgeError(err)
}

// bridgeError gives a bridge manager's error its Matrix error.
func bridgeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bridges.ErrUnknownBridge):
		return mxhttp.NotFound("%s", err.Error())
	case errors.Is(err, bridges.ErrInvalid):
		return mxhttp.InvalidParam("%s", err.Error())
	}
	return err
}
