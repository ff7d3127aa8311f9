package host

import (
	"io"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/status"
)

// ConfigFile, DatabaseFile are the names of the bridge's config and database in its directory.
const (
	ConfigFile   = "config.yaml"
	DatabaseFile = "bridge.db"
)

// statePath is where the bridge posts its bridge states (bridgev2's
// status endpoint), on its own appservice listener.
const statePath = "/_matrixos/bridge_state"

// Options say which bridge to run against which node.
type Options struct {
	// Name is the bridge's name ("slack"): the appservice ID is
	// "bridge-"+Name, the bot "@<name>bot", ghosts "@<name>_...".
	Name string
	// Dir holds config.yaml and bridge.db.
	Dir string
	// RegistrationFile is the registration the node loads for the bridge:
	// its tokens, url (where the bridge listens) and namespaces.
	RegistrationFile string
	// HomeserverURL is the node's client API base URL, ServerName its
	// server name.
	HomeserverURL string
	ServerName    string
	// Network is the bridge's network connector, fresh for this run.
	Network bridgev2.NetworkConnector
	// Log receives the bridge's log lines (text, one a line); nil drops them.
	Log io.Writer
	// Debug logs at debug level (each request the bridge makes, ...);
	// otherwise from info up.
	Debug bool
	// OnState, when set, gets each bridge state the bridge reports.
	OnState func(status.BridgeState)
	// Started, when set, is called once the bridge is connected to the
	// node and its logins are started.
	Started func()
}
