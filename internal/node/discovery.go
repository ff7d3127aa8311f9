package node

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// specVersions are the Client-Server API versions this node speaks.
var specVersions = []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19"}

func (n *Node) discoveryRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_matrix/client/versions", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]any{"versions": specVersions, "unstable_features": map[string]bool{}}, nil
	}))
	mux.HandleFunc("GET /.well-known/matrix/client", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]any{"m.homeserver": map[string]string{"base_url": n.cfg.BaseURL()}}, nil
	}))
	mux.HandleFunc("GET /.well-known/matrix/server", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]string{"m.server": n.cfg.ServerName}, nil
	}))
	mux.HandleFunc("GET /_matrix/client/v3/capabilities", n.Accounts.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		available := map[id.RoomVersion]string{}
		for _, v := range rooms.SupportedVersions {
			available[v] = "stable"
		}
		caps := map[string]any{
			"m.change_password": map[string]bool{"enabled": true},
			"m.room_versions":   map[string]any{"default": n.cfg.DefaultRoomVersion, "available": available},
			"m.set_displayname": map[string]bool{"enabled": true},
			"m.set_avatar_url":  map[string]bool{"enabled": true},
			"m.3pid_changes":    map[string]bool{"enabled": false},
			"m.get_login_token": map[string]bool{"enabled": true},
			"m.profile_fields":  map[string]any{"enabled": true},
		}
		if sess.IsAdmin {
			caps["m.account_moderation"] = map[string]bool{"suspend": true, "lock": true}
		}
		return map[string]any{"capabilities": caps}, nil
	}))
}
