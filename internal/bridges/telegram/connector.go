// Package telegram is the built-in Telegram bridge: a bridgev2 network
// connector that puppets a Telegram account through gotd's MTProto client.
// A user logs in with their phone number and the code Telegram sends (then
// the cloud password, proved by SRP, where the account has two-step
// verification); the gotd session, the update state (pts, and each supergroup's and channel's
// own) and the users' and channels' access hashes live in the login's
// metadata, so messages sent while the bridge was down arrive through
// getDifference and getChannelDifference, and the bridge can still name a
// chat to Telegram after a restart. Private chats, basic groups,
// supergroups and broadcast channels are bridged (channels.go).
package telegram

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/dcs"
	"github.com/gotd/td/tg"
	"go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/guard"
)

// Config is the bridge config's network section.
type Config struct {
	// APIID and APIHash identify the application (my.telegram.org).
	APIID   int    `yaml:"api_id"`
	APIHash string `yaml:"api_hash"`
	// DCAddress, DCID and PublicKey point the client at another data
	// center (the tests' fake); empty means Telegram's production DCs.
	DCAddress string `yaml:"dc_address"`
	DCID      int    `yaml:"dc_id"`
	PublicKey string `yaml:"public_key"`
	// MaxFileSizeMiB is the largest file the bridge carries either way, in
	// MiB (50 when unset). Telegram takes up to 2 GB; files cross as
	// streams, so the limit bounds time and disk, not memory.
	MaxFileSizeMiB int `yaml:"max_file_size_mib"`
}

// defaultMaxFileSize is the file size limit when the config sets none.
const defaultMaxFileSize = 50 << 20

// maxFileSize is the largest file the bridge carries, in bytes.
func (c Config) maxFileSize() int64 {
	if c.MaxFileSizeMiB <= 0 {
		return defaultMaxFileSize
	}
	return int64(c.MaxFileSizeMiB) << 20
}

// errNoApp is why a bridge without its application's api_id and api_hash
// cannot log anyone in.
var errNoApp = errors.New("the Telegram bridge has no api_id and api_hash: get them at https://my.telegram.org/apps, " +
	"set network.api_id and network.api_hash in the bridge's config.yaml and restart it (matrixos bridge disable telegram, then enable)")

// checkApp reports whether the application is configured.
func (c Config) checkApp() error {
	if c.APIID <= 0 || c.APIHash == "" {
		return errNoApp
	}
	return nil
}

const exampleConfig = `# The application's api_id and api_hash from https://my.telegram.org/apps.
api_id: 0
api_hash: ""
# Another data center (host:port, its ID and RSA public key in PEM), for tests.
# Leave empty for Telegram itself.
dc_address: ""
dc_id: 0
public_key: ""
# The largest file carried either way, in MiB.
max_file_size_mib: 50
`

// Kind is the Telegram bridge for the bridge manager.
func Kind() bridges.Kind {
	return bridges.Kind{
		Name:        "telegram",
		Description: "Telegram accounts (log in with a phone number and code; puppets your own chats)",
		NewNetwork:  func() bridgev2.NetworkConnector { return NewConnector() },
	}
}

// Connector is the Telegram bridgev2.NetworkConnector.
type Connector struct {
	Bridge *bridgev2.Bridge
	Config Config

	// guard fails the bridge's run on a panic in a goroutine of ours.
	guard     *guard.Guard
	newLogins bridges.Logins // stores and connects logins one at a time

	loginsMu sync.Mutex
	logins   map[id.UserID]*phoneLogin // each user's login in progress
}

var _ bridgev2.NetworkConnector = (*Connector)(nil)

// NewConnector returns a Telegram connector for a bridgev2.Bridge.
func NewConnector() *Connector { return &Connector{} }

// Init keeps the bridge and makes it handle remote events synchronously
// (no portal event buffer): gotd saves an update's pts as soon as the
// update handler returns, so the handler must return only once the event
// is in Matrix, or a crash in between would lose it for good.
func (c *Connector) Init(bridge *bridgev2.Bridge) {
	c.Bridge = bridge
	if bridge.Config != nil {
		bridge.Config.PortalEventBuffer = 0
	}
}

// Start checks the config and keeps the run's guard.
func (c *Connector) Start(ctx context.Context) error {
	c.guard = guard.FromContext(ctx)
	_, err := c.clientOptions()
	return err
}

// GetName describes Telegram.
func (c *Connector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          "Telegram",
		NetworkURL:           "https://telegram.org",
		NetworkID:            "telegram",
		BeeperBridgeType:     "telegram",
		DefaultPort:          29317,
		DefaultCommandPrefix: "!tg",
	}
}

// GetDBMetaTypes declares the login metadata.
func (c *Connector) GetDBMetaTypes() database.MetaTypes {
	return database.MetaTypes{UserLogin: func() any { return &UserLoginMetadata{} }}
}

// GetCapabilities: nothing beyond the defaults.
func (c *Connector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{}
}

// GetConfig returns the network section's example, target and upgrader.
func (c *Connector) GetConfig() (string, any, configupgrade.Upgrader) {
	return exampleConfig, &c.Config, configupgrade.SimpleUpgrader(func(helper configupgrade.Helper) {
		helper.Copy(configupgrade.Int, "api_id")
		helper.Copy(configupgrade.Str, "api_hash")
		helper.Copy(configupgrade.Str, "dc_address")
		helper.Copy(configupgrade.Int, "dc_id")
		helper.Copy(configupgrade.Str, "public_key")
		helper.Copy(configupgrade.Int, "max_file_size_mib")
	})
}

// GetBridgeInfoVersion versions m.bridge and room capabilities.
func (c *Connector) GetBridgeInfoVersion() (info, capabilities int) { return 1, 3 }

// LoadUserLogin gives a stored login its client; it connects later.
func (c *Connector) LoadUserLogin(_ context.Context, login *bridgev2.UserLogin) error {
	login.Client = newClient(c, login)
	return nil
}

// clientOptions are the gotd options for the configured data center.
func (c *Connector) clientOptions() (telegram.Options, error) {
	if c.Config.DCAddress == "" {
		return telegram.Options{}, nil
	}
	host, port, err := net.SplitHostPort(c.Config.DCAddress)
	if err != nil {
		return telegram.Options{}, fmt.Errorf("network.dc_address: %w", err)
	}
	portNumber, err := strconv.Atoi(port)
	if err != nil {
		return telegram.Options{}, fmt.Errorf("network.dc_address port: %w", err)
	}
	block, _ := pem.Decode([]byte(c.Config.PublicKey))
	if block == nil {
		return telegram.Options{}, fmt.Errorf("network.public_key: no PEM block")
	}
	key, err := x509.ParsePKCS1PublicKey(block.Bytes)
	if err != nil {
		return telegram.Options{}, fmt.Errorf("network.public_key: %w", err)
	}
	return telegram.Options{
		DC:         c.Config.DCID,
		DCList:     dcs.List{Options: []tg.DCOption{{ID: c.Config.DCID, IPAddress: host, Port: portNumber, Static: true}}},
		Resolver:   dcs.Plain(dcs.PlainOptions{}),
		PublicKeys: []telegram.PublicKey{{RSA: key}},
	}, nil
}
