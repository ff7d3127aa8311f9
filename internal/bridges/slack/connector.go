package slack

import (
	"context"
	"net/http"
	"time"

	"go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/guard"
)

// Config is the bridge config's network section.
type Config struct {
	// APIURL is Slack's Web API base URL; empty means https://slack.com/api/.
	APIURL string `yaml:"api_url"`
}

const exampleConfig = `# Slack's Web API base URL, ending in /api/. Leave empty for Slack itself.
api_url: ""
`

// defaultMaxFileSize bounds a file bridged either way until bridgev2 tells
// the connector the homeserver's upload limit.
const defaultMaxFileSize = 50 << 20

// Connector is the Slack bridgev2.NetworkConnector.
type Connector struct {
	Bridge *bridgev2.Bridge
	Config Config

	maxFileSize int64
	httpClient  *http.Client
	// guard fails the bridge's run on a panic in a goroutine of ours.
	guard     *guard.Guard
	newLogins bridges.Logins // stores and connects logins one at a time
}

var (
	_ bridgev2.NetworkConnector      = (*Connector)(nil)
	_ bridgev2.MaxFileSizeingNetwork = (*Connector)(nil)
)

// NewConnector returns a Slack connector for a bridgev2.Bridge.
func NewConnector() *Connector {
	return &Connector{maxFileSize: defaultMaxFileSize, httpClient: &http.Client{Timeout: 2 * time.Minute}}
}

// Init keeps the bridge.
func (c *Connector) Init(bridge *bridgev2.Bridge) { c.Bridge = bridge }

// Start has nothing to do: each login connects on its own.
func (c *Connector) Start(ctx context.Context) error {
	c.guard = guard.FromContext(ctx)
	return nil
}

// GetName describes Slack for m.bridge events and the example config.
func (c *Connector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          "Slack",
		NetworkURL:           "https://slack.com",
		NetworkID:            "slack",
		BeeperBridgeType:     "slack",
		DefaultPort:          29335,
		DefaultCommandPrefix: "!slack",
	}
}

// GetDBMetaTypes declares the login metadata (the tokens).
func (c *Connector) GetDBMetaTypes() database.MetaTypes {
	return database.MetaTypes{
		UserLogin: func() any { return &UserLoginMetadata{} },
	}
}

// GetCapabilities: Slack has no disappearing messages.
func (c *Connector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{}
}

// GetConfig returns the network section's example, target and upgrader.
func (c *Connector) GetConfig() (string, any, configupgrade.Upgrader) {
	return exampleConfig, &c.Config, configupgrade.SimpleUpgrader(func(helper configupgrade.Helper) {
		helper.Copy(configupgrade.Str, "api_url")
	})
}

// GetBridgeInfoVersion versions m.bridge and room capabilities.
func (c *Connector) GetBridgeInfoVersion() (info, capabilities int) { return 1, 1 }

// SetMaxFileSize takes the homeserver's upload limit.
func (c *Connector) SetMaxFileSize(maxSize int64) { c.maxFileSize = maxSize }

// LoadUserLogin gives a stored login its Slack client; it connects later.
func (c *Connector) LoadUserLogin(_ context.Context, login *bridgev2.UserLogin) error {
	login.Client = newClient(c, login)
	return nil
}
