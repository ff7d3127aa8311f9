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

// unstableFeatures are the unstable_features flags of /versions: each
// names, as its MSC does, a feature this node implements. Clients look
// for some of them although the spec versions above cover the feature
// (Element sets up cross-signing only when it sees
// org.matrix.e2e_cross_signing). A flag goes here only with its feature.
var unstableFeatures = map[string]bool{
	// Cross-signing keys and signatures (keys: /keys/device_signing/upload,
	// /keys/signatures/upload, also under /unstable).
	"org.matrix.e2e_cross_signing": true,
	// Private read receipts, m.read.private (ephemeral).
	"org.matrix.msc2285.stable": true,
	// Threads: m.thread relations, their bundled aggregations and
	// /threads (rooms, clientapi), threaded receipts (ephemeral).
	"org.matrix.msc3440.stable": true,
	// Deleting account data (accountdata): DELETE under
	// /unstable/org.matrix.msc3391, and PUT {} as deletion.
	"org.matrix.msc3391": true,
	// Filtering room events by relation type (sync, clientapi):
	// org.matrix.msc3874.rel_types and not_rel_types in event filters.
	"org.matrix.msc3874": true,
	// Remotely silencing notifications (accountdata): a deleted device's
	// org.matrix.msc3890.local_notification_settings.<device> goes with it.
	"org.matrix.msc3890": true,
	// The room_types filter of /publicRooms (clientapi).
	"org.matrix.msc3827.stable": true,
	// Authenticated media under /_matrix/client/v1/media (media).
	"org.matrix.msc3916.stable": true,
	// QR code login (rendezvous, oauth): rendezvous sessions under
	// /unstable/org.matrix.msc4108/rendezvous, beside the OAuth 2.0
	// device authorization grant that auth_metadata advertises.
	"org.matrix.msc4108": true,
	// Delayed events (delayed): org.matrix.msc4140.delay on send and
	// state requests, and /unstable/org.matrix.msc4140/delayed_events.
	"org.matrix.msc4140": true,
	// Thread subscriptions (threadsubs, push): the endpoints under
	// /unstable/io.element.msc4306 and the postcontent push rules.
	"org.matrix.msc4306": true,
	// Their sliding sync extension (sync), and the endpoint that pages
	// back through the changes it left out (threadsubs).
	"org.matrix.msc4308": true,
	// use_state_after and state_after in /sync (sync). MSC4222 names no
	// flag, but servers advertise this one and clients look for it.
	"org.matrix.msc4222": true,
	// Simplified sliding sync, MSC4186 (sync): POST
	// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync. Element
	// X looks for this flag alone.
	"org.matrix.simplified_msc3575": true,
}

func (n *Node) discoveryRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_matrix/client/versions", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]any{"versions": specVersions, "unstable_features": unstableFeatures}, nil
	}))
	mux.HandleFunc("GET /.well-known/matrix/client", mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]any{"m.homeserver": map[string]string{"base_url": n.cfg.BaseURL()}}, nil
	}))
	// /.well-known/matrix/server delegates federation: answered only
	// while federation is on, so that other servers are not sent here for
	// nothing.
	mux.HandleFunc("GET /.well-known/matrix/server", func(w http.ResponseWriter, r *http.Request) {
		if n.Federation != nil {
			n.Federation.ServeWellKnown(w, r)
			return
		}
		mxhttp.WriteError(w, r, mxhttp.NotFound("federation is not enabled on this server"))
	})
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
			// MSC4155: the server enforces the invite permission config
			// (clientapi refuses blocked invites, sync hides ignored ones).
			"org.matrix.msc4155.invite_permission_config_enforced": map[string]bool{"enabled": true},
		}
		if sess.IsAdmin {
			caps["m.account_moderation"] = map[string]bool{"suspend": true, "lock": true}
		}
		return map[string]any{"capabilities": caps}, nil
	}))
}
