package discord

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/rs/zerolog"
	"go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/guard"
)

// Config is the bridge's `network:` section.
type Config struct {
	// APIURL is Discord's base URL, under which api/v9/... lives. Empty
	// means https://discord.com/. The gateway's URL is what GET /gateway
	// there answers.
	APIURL string `yaml:"api_url"`
	// CDNURL is where avatars are fetched from. Empty means
	// https://cdn.discordapp.com/.
	CDNURL string `yaml:"cdn_url"`
	// CatchUpLimit is how many messages per channel are fetched, after a
	// restart, from after the last bridged one. 0 means 500.
	CatchUpLimit int `yaml:"catch_up_limit"`
	// PublicMediaURL is the node's address as Discord may reach it, when
	// the node serves media without authentication: relayed messages show
	// their sender's Matrix avatar from there. Empty means no avatar.
	PublicMediaURL string `yaml:"public_media_url"`
}

//go:embed example-config.yaml
var exampleConfig string

func upgradeConfig(helper configupgrade.Helper) {
	helper.Copy(configupgrade.Str|configupgrade.Null, "api_url")
	helper.Copy(configupgrade.Str|configupgrade.Null, "cdn_url")
	helper.Copy(configupgrade.Int, "catch_up_limit")
	helper.Copy(configupgrade.Str|configupgrade.Null, "public_media_url")
}

const (
	defaultAPIURL       = "https://discord.com/"
	defaultCDNURL       = "https://cdn.discordapp.com/"
	defaultCatchUpLimit = 500
	// maxDiscordUpload is what a bot may upload to a guild without boosts.
	maxDiscordUpload = 25 << 20
	// maxContentLength is Discord's limit on a message's text.
	maxContentLength = 2000
)

// Connector is the Discord bridgev2.NetworkConnector: a bot relay for
// guild channels and the bot's DMs, or a user's own account.
//
// discordgo keeps Discord's URLs in package-level variables, so only one
// Discord bridge (one Connector) may run per process.
type Connector struct {
	Config Config

	br          *bridgev2.Bridge
	maxFileSize atomic.Int64
	httpClient  *http.Client
	// guard fails the bridge's run on a panic in a goroutine of ours.
	guard     *guard.Guard
	newLogins bridges.Logins // stores and connects logins one at a time
}

var (
	_ bridgev2.NetworkConnector      = (*Connector)(nil)
	_ bridgev2.MaxFileSizeingNetwork = (*Connector)(nil)
)

// NewConnector returns a Discord connector with an empty config.
func NewConnector() *Connector {
	return &Connector{httpClient: &http.Client{Timeout: 2 * time.Minute}}
}

// Init is called by bridgev2 before Start.
func (c *Connector) Init(br *bridgev2.Bridge) {
	c.br = br
	// discordgo logs through one package-level function: into the log of the
	// bridge initialized last. The function is set once, as goroutines of an
	// earlier run may still be logging through it; what changes is the
	// logger it reads.
	log := br.Log.With().Str("component", "discordgo").Logger()
	discordgoLog.Store(&log)
	installDiscordgoLogger.Do(func() {
		discordgo.Logger = func(level, _ int, format string, args ...any) {
			if log := discordgoLog.Load(); log != nil {
				log.WithLevel(discordgoLevel(level)).Msgf(format, args...)
			}
		}
	})
}

var (
	// discordgoLog is the logger discordgo's messages go to.
	discordgoLog atomic.Pointer[zerolog.Logger]
	// installDiscordgoLogger sets discordgo.Logger, once per process.
	installDiscordgoLogger sync.Once
)

func discordgoLevel(level int) zerolog.Level {
	switch level {
	case discordgo.LogError:
		return zerolog.ErrorLevel
	case discordgo.LogWarning:
		return zerolog.WarnLevel
	case discordgo.LogInformational:
		return zerolog.InfoLevel
	}
	return zerolog.DebugLevel
}

// endpointsMu serializes changes to discordgo's package-level endpoints.
var endpointsMu sync.Mutex

var _ bridgev2.ConfigValidatingNetwork = (*Connector)(nil)

// ValidateConfig checks the network section before the bridge starts.
func (c *Connector) ValidateConfig() error {
	if _, err := baseURL(c.Config.APIURL, defaultAPIURL); err != nil {
		return fmt.Errorf("discord: api_url: %w", err)
	}
	if _, err := baseURL(c.Config.CDNURL, defaultCDNURL); err != nil {
		return fmt.Errorf("discord: cdn_url: %w", err)
	}
	if c.Config.PublicMediaURL != "" {
		if _, err := baseURL(c.Config.PublicMediaURL, ""); err != nil {
			return fmt.Errorf("discord: public_media_url: %w", err)
		}
	}
	if c.Config.CatchUpLimit < 0 {
		return fmt.Errorf("discord: catch_up_limit %d is negative", c.Config.CatchUpLimit)
	}
	return nil
}

// Start points discordgo at the configured Discord.
func (c *Connector) Start(ctx context.Context) error {
	c.guard = guard.FromContext(ctx)
	apiURL, err := baseURL(c.Config.APIURL, defaultAPIURL)
	if err != nil {
		return fmt.Errorf("discord: api_url: %w", err)
	}
	cdnURL, err := baseURL(c.Config.CDNURL, defaultCDNURL)
	if err != nil {
		return fmt.Errorf("discord: cdn_url: %w", err)
	}
	setEndpoints(apiURL, cdnURL)
	return nil
}

// baseURL validates an http(s) base URL and gives it a trailing slash.
func baseURL(raw, fallback string) (string, error) {
	if raw == "" {
		return fallback, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return "", fmt.Errorf("%q is not an http(s) URL", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	if !strings.HasSuffix(raw, "/") {
		raw += "/"
	}
	return raw, nil
}

// setEndpoints rewrites discordgo's endpoint variables, which are computed
// from EndpointDiscord and EndpointCDN once at package init.
func setEndpoints(apiURL, cdnURL string) {
	endpointsMu.Lock()
	defer endpointsMu.Unlock()
	discordgo.EndpointDiscord = apiURL
	discordgo.EndpointAPI = apiURL + "api/v" + discordgo.APIVersion + "/"
	discordgo.EndpointGuilds = discordgo.EndpointAPI + "guilds/"
	discordgo.EndpointChannels = discordgo.EndpointAPI + "channels/"
	discordgo.EndpointUsers = discordgo.EndpointAPI + "users/"
	discordgo.EndpointGateway = discordgo.EndpointAPI + "gateway"
	discordgo.EndpointGatewayBot = discordgo.EndpointGateway + "/bot"
	discordgo.EndpointWebhooks = discordgo.EndpointAPI + "webhooks/"
	discordgo.EndpointStickers = discordgo.EndpointAPI + "stickers/"
	discordgo.EndpointStageInstances = discordgo.EndpointAPI + "stage-instances"
	discordgo.EndpointVoice = discordgo.EndpointAPI + "/voice/"
	discordgo.EndpointVoiceRegions = discordgo.EndpointVoice + "regions"
	discordgo.EndpointNitroStickersPacks = discordgo.EndpointAPI + "/sticker-packs"
	discordgo.EndpointGuildCreate = discordgo.EndpointAPI + "guilds"
	discordgo.EndpointApplications = discordgo.EndpointAPI + "applications"

	discordgo.EndpointCDN = cdnURL
	discordgo.EndpointCDNAttachments = cdnURL + "attachments/"
	discordgo.EndpointCDNAvatars = cdnURL + "avatars/"
	discordgo.EndpointCDNIcons = cdnURL + "icons/"
	discordgo.EndpointCDNSplashes = cdnURL + "splashes/"
	discordgo.EndpointCDNChannelIcons = cdnURL + "channel-icons/"
	discordgo.EndpointCDNBanners = cdnURL + "banners/"
	discordgo.EndpointCDNGuilds = cdnURL + "guilds/"
	discordgo.EndpointCDNRoleIcons = cdnURL + "role-icons/"
}

// GetName describes the bridge.
func (c *Connector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          "Discord",
		NetworkURL:           "https://discord.com",
		NetworkID:            "discord",
		BeeperBridgeType:     "discord",
		DefaultPort:          29334,
		DefaultCommandPrefix: "!discord",
	}
}

// GetDBMetaTypes names the metadata the bridge keeps per login and message.
func (c *Connector) GetDBMetaTypes() database.MetaTypes {
	return database.MetaTypes{
		UserLogin: func() any { return &UserLoginMetadata{} },
		Message:   func() any { return &MessageMetadata{} },
		Portal:    func() any { return &PortalMetadata{} },
	}
}

// GetCapabilities says what the network does as a whole.
func (c *Connector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{TypingRepeatInterval: typingRepeat}
}

// GetConfig returns the example `network:` section and where it is loaded.
func (c *Connector) GetConfig() (string, any, configupgrade.Upgrader) {
	return exampleConfig, &c.Config, configupgrade.SimpleUpgrader(upgradeConfig)
}

// GetBridgeInfoVersion versions the m.bridge state and room capabilities.
func (c *Connector) GetBridgeInfoVersion() (info, capabilities int) {
	return 1, 1
}

// SetMaxFileSize is the homeserver's upload limit, learnt at start.
func (c *Connector) SetMaxFileSize(maxSize int64) {
	c.maxFileSize.Store(maxSize)
}

// mediaLimit is the largest file bridged in either direction.
func (c *Connector) mediaLimit() int64 {
	if m := c.maxFileSize.Load(); m > 0 && m < maxDiscordUpload {
		return m
	}
	return maxDiscordUpload
}

func (c *Connector) catchUpLimit() int {
	if c.Config.CatchUpLimit > 0 {
		return c.Config.CatchUpLimit
	}
	return defaultCatchUpLimit
}

// UserLoginMetadata is what the bridge keeps for a login.
type UserLoginMetadata struct {
	Token string `json:"token"`
	// UserToken is set when Token is a user account's, not a bot's.
	UserToken bool `json:"user_token,omitempty"`
}

// MessageMetadata is kept per bridged message.
type MessageMetadata struct {
	// ChannelID is the Discord channel the message is in: the portal's
	// channel, or a thread of it.
	ChannelID string `json:"channel_id"`
	// WebhookID is the webhook a relayed message was sent through.
	WebhookID string `json:"webhook_id,omitempty"`
}

// PortalMetadata is kept per portal.
type PortalMetadata struct {
	GuildID string `json:"guild_id,omitempty"`
	// RelayOffered is set once the bot login was made the portal's relay.
	RelayOffered bool `json:"relay_offered,omitempty"`
}

// LoadUserLogin gives a stored login its Discord client.
func (c *Connector) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	meta, ok := login.Metadata.(*UserLoginMetadata)
	if !ok || meta.Token == "" {
		return fmt.Errorf("discord: login %s has no token", login.ID)
	}
	client, err := newClient(c, login, meta.Token, meta.UserToken)
	if err != nil {
		return err
	}
	login.Client = client
	return nil
}
