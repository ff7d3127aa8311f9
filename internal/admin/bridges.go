package admin

import (
	"context"
	"net/http"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// BridgesAdmin is what the bridge endpoints need from the bridge manager
// (internal/bridges, through the node). Each method answers with the JSON
// body of its endpoint, or an *mxhttp.Error.
type BridgesAdmin interface {
	// ListBridges lists every bridge's status.
	ListBridges(ctx context.Context) (any, error)
	// Bridge is one bridge's status with its recent log lines.
	Bridge(ctx context.Context, name string) (any, error)
	// EnableBridge writes the bridge's files unless they exist, records it
	// enabled and starts it.
	EnableBridge(ctx context.Context, name string) (any, error)
	// DisableBridge stops it, keeping its files and data.
	DisableBridge(ctx context.Context, name string) (any, error)
}

var errNoBridges = &mxhttp.Error{Status: http.StatusNotFound, Code: "M_NOT_FOUND", Message: "this node runs no bridges"}

// bridgeRoutes are the bridge manager's endpoints. An external bridge
// (a program the node runs) is enabled the first time with the admin CLI
// (`matrixos bridge enable NAME --binary PATH`), never over HTTP: naming
// a program to run is for who has a shell on the host.
func (s *Service) bridgeRoutes(mux *http.ServeMux) {
	const v1 = "/_matrixos/admin/v1/bridges"
	mux.HandleFunc("GET "+v1, s.admin(s.bridgesCall(func(ctx context.Context, _ string) (any, error) {
		return s.Bridges.ListBridges(ctx)
	})))
	mux.HandleFunc("GET "+v1+"/{name}", s.admin(s.bridgesCall(func(ctx context.Context, name string) (any, error) {
		return s.Bridges.Bridge(ctx, name)
	})))
	mux.HandleFunc("POST "+v1+"/{name}/enable", s.admin(s.bridgesCall(func(ctx context.Context, name string) (any, error) {
		return s.Bridges.EnableBridge(ctx, name)
	})))
	mux.HandleFunc("POST "+v1+"/{name}/disable", s.admin(s.bridgesCall(func(ctx context.Context, name string) (any, error) {
		return s.Bridges.DisableBridge(ctx, name)
	})))
}

// bridgesCall adapts a bridge manager call to a handler.
func (s *Service) bridgesCall(call func(ctx context.Context, name string) (any, error)) accounts.AuthedHandler {
	return func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if s.Bridges == nil {
			return nil, errNoBridges
		}
		return call(r.Context(), r.PathValue("name"))
	}
}
