package discord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
)

// intents are the gateway intents the bridge asks for. MESSAGE_CONTENT is
// privileged: it must be turned on for the bot in Discord's developer portal.
const intents = discordgo.IntentsGuilds |
	discordgo.IntentsGuildMessages |
	discordgo.IntentsGuildMessageReactions |
	discordgo.IntentsDirectMessages |
	discordgo.IntentsDirectMessageReactions |
	discordgo.IntentsGuildMessageTyping |
	discordgo.IntentsDirectMessageTyping |
	discordgo.IntentMessageContent

// closeAuthenticationFailed is the gateway's close code for a bad token.
const closeAuthenticationFailed = 4004

// Reconnect backoff after a failed gateway connect.
const (
	firstRetryDelay = 2 * time.Second
	maxRetryDelay   = 5 * time.Minute
)

// Client is one login (a bot, or a user with their own token): its REST
// session and gateway connection.
type Client struct {
	connector *Connector
	login     *bridgev2.UserLogin
	session   *discordgo.Session
	selfID    string // the login's Discord user: the bot or the user

	mu       sync.Mutex
	stopped  bool               // Disconnect was called (and Connect not since)
	stop     context.CancelFunc // ends the connect retry loop
	caughtUp map[string]bool    // channels caught up in this gateway session

	// webhooks are what relayed messages are sent through.
	webhooks *webhooks
	// userToken is set for a user account's login (not a bot's): the
	// user's own messages typed on Discord are bridged, and those the
	// bridge sent for them (own) are not.
	userToken bool
	own       ownSends
	// webhookAuthors are the profiles of foreign webhooks' authors
	// (webhookauthors.go).
	webhookAuthors webhookAuthors
}

var (
	_ bridgev2.NetworkAPI                    = (*Client)(nil)
	_ bridgev2.EditHandlingNetworkAPI        = (*Client)(nil)
	_ bridgev2.ReactionHandlingNetworkAPI    = (*Client)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI   = (*Client)(nil)
	_ bridgev2.IdentifierResolvingNetworkAPI = (*Client)(nil)
)

func newClient(c *Connector, login *bridgev2.UserLogin, token string, userToken bool) (*Client, error) {
	session, err := discordgo.New(authorization(token, userToken))
	if err != nil {
		return nil, fmt.Errorf("discord: new session: %w", err)
	}
	session.Client = c.httpClient
	session.Identify.Intents = intents
	// Handlers run one at a time, in the gateway's order, so that messages
	// reach bridgev2's portal queues in the order Discord sent them.
	session.SyncEvents = true
	session.ShouldReconnectOnError = false // connectLoop reconnects
	session.ShouldRetryOnRateLimit = true
	session.StateEnabled = true
	session.LogLevel = discordgo.LogWarning
	client := &Client{connector: c, login: login, session: session, selfID: string(login.ID), caughtUp: map[string]bool{}, webhooks: newWebhooks(), userToken: userToken}
	session.AddHandler(guarded(client, "READY", client.onReady))
	session.AddHandler(guarded(client, "RESUMED", client.onResumed))
	session.AddHandler(guarded(client, "disconnect", client.onDisconnect))
	session.AddHandler(guarded(client, "GUILD_CREATE", client.onGuildCreate))
	session.AddHandler(guarded(client, "MESSAGE_CREATE", client.onMessageCreate))
	session.AddHandler(guarded(client, "MESSAGE_UPDATE", client.onMessageUpdate))
	session.AddHandler(guarded(client, "MESSAGE_DELETE", client.onMessageDelete))
	session.AddHandler(guarded(client, "MESSAGE_REACTION_ADD", client.onReactionAdd))
	session.AddHandler(guarded(client, "MESSAGE_REACTION_REMOVE", client.onReactionRemove))
	session.AddHandler(guarded(client, "TYPING_START", client.onTypingStart))
	return client, nil
}

// guarded wraps an event handler so that a panic in it (a bug meeting input
// nobody foresaw) is contained to that event. discordgo runs handlers on
// its gateway reader goroutine (SyncEvents) without a recover, so a panic
// there would crash the whole node.
func guarded[T any](c *Client, event string, handle func(*discordgo.Session, T)) func(*discordgo.Session, T) {
	return func(s *discordgo.Session, evt T) {
		defer c.recoverPanic("handling a Discord " + event + " event")
		handle(s, evt)
	}
}

// recoverPanic, deferred, turns a panic of the goroutine into a logged
// error and an unknown-error bridge state; the connection and the events
// after the one that panicked go on.
func (c *Client) recoverPanic(what string) {
	v := recover()
	if v == nil {
		return
	}
	c.login.Log.Error().Any("panic", v).Str("stack", string(debug.Stack())).Msg("Panic while " + what)
	c.login.BridgeState.Send(status.BridgeState{
		StateEvent: status.StateUnknownError, Error: "discord-panic", Message: fmt.Sprintf("panic while %s: %v", what, v),
	})
}

// Connect opens the gateway in the background, retrying with backoff
// until it succeeds, the token is refused or Disconnect is called. It
// returns at once: bridgev2 connects its logins one after the other, and
// one whose gateway cannot be reached must not hold up the others.
func (c *Client) Connect(context.Context) {
	defer c.connector.guard.Recover() // bridgev2's reconnect calls it from a goroutine of its own
	c.mu.Lock()
	c.stopped = false
	c.mu.Unlock()
	c.reconnect()
}

// reconnect starts connectLoop in a goroutine of its own, ending the loop
// before it, unless Disconnect was called.
func (c *Client) reconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if c.stop != nil {
		c.stop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go func() {
		defer c.recoverPanic("connecting to the Discord gateway")
		c.connectLoop(ctx)
	}()
}

// connectLoop opens the gateway (RESUMEing the session after a dropped
// connection), retrying with backoff until ctx ends (a newer loop or
// Disconnect).
//
// discordgo's own reconnect is off (ShouldReconnectOnError): its reader
// can race with Close and reconnect (RESUME) a connection Disconnect is
// closing, leaving a second gateway session running after the bridge
// stopped (TestBridgeEndToEnd saw it).
func (c *Client) connectLoop(ctx context.Context) {
	delay := firstRetryDelay
	for ctx.Err() == nil {
		c.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnecting})
		err := c.session.Open()
		if err == nil || errors.Is(err, discordgo.ErrWSAlreadyOpen) {
			if c.isStopped() {
				// Disconnect ran meanwhile: it must not stay open.
				c.closeSession()
			}
			return
		}
		var closeErr *websocket.CloseError
		if errors.As(err, &closeErr) && closeErr.Code == closeAuthenticationFailed {
			c.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateBadCredentials, Error: "discord-bad-token", Message: "Discord refused the token"})
			return
		}
		c.login.Log.Warn().Err(err).Dur("retry_in", delay).Msg("Connecting to the Discord gateway failed")
		c.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: "discord-connect-failed", Message: err.Error()})
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, maxRetryDelay)
	}
}

func (c *Client) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// Disconnect closes the gateway connection for good.
func (c *Client) Disconnect() {
	c.mu.Lock()
	c.stopped = true
	if c.stop != nil {
		c.stop()
	}
	c.mu.Unlock()
	c.closeSession()
}

func (c *Client) closeSession() {
	if err := c.session.Close(); err != nil {
		c.login.Log.Debug().Err(err).Msg("Closing the Discord gateway")
	}
}

// ownSends tells the echoes of what a user login sent from Matrix from the
// user's own messages typed on Discord. A send holds mu until its
// message's ID is recorded, so an echo that arrives over the gateway
// before the REST answer waits for it.
type ownSends struct {
	mu  sync.Mutex
	ids map[string]time.Time // sent message IDs, with when
}

// ownEchoMemory is how long a sent message's ID is remembered.
const ownEchoMemory = 10 * time.Minute

// send runs send and remembers the ID of the message it returns.
func (o *ownSends) send(send func() (*discordgo.Message, error)) (*discordgo.Message, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m, err := send()
	if err != nil || m == nil {
		return m, err
	}
	if o.ids == nil {
		o.ids = map[string]time.Time{}
	}
	now := time.Now()
	for old, at := range o.ids {
		if now.Sub(at) > ownEchoMemory {
			delete(o.ids, old)
		}
	}
	o.ids[m.ID] = now
	return m, nil
}

// isEcho reports whether a message is one the bridge sent, waiting for a
// send in flight.
func (o *ownSends) isEcho(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.ids[id]
	return ok
}

// IsLoggedIn reports whether the client has a token; Discord checks it.
func (c *Client) IsLoggedIn() bool { return c.session.Token != "" }

// LogoutRemote disconnects; a token cannot be revoked from here.
func (c *Client) LogoutRemote(ctx context.Context) { c.Disconnect() }

// IsThisUser reports whether a Discord user is the login's own.
func (c *Client) IsThisUser(ctx context.Context, userID networkid.UserID) bool {
	return string(userID) == c.selfID
}

func (c *Client) onReady(s *discordgo.Session, r *discordgo.Ready) {
	c.login.Log.Info().Str("bot", r.User.Username).Int("guilds", len(r.Guilds)).Msg("Connected to the Discord gateway")
	c.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
	ctx := c.login.Log.WithContext(context.Background())
	// A fresh session: whatever happened while no session was open is not
	// replayed by Discord, so fetch it. Guild channels are caught up when
	// their GUILD_CREATE arrives; DMs here.
	c.mu.Lock()
	c.caughtUp = map[string]bool{}
	c.mu.Unlock()
	portals, err := c.connector.br.GetAllPortalsWithMXID(ctx)
	if err != nil {
		c.login.Log.Err(err).Msg("Listing portals to catch up")
		return
	}
	for _, portal := range portals {
		if portal.Receiver == c.login.ID && portal.RoomType == database.RoomTypeDM {
			c.catchUp(ctx, string(portal.ID), "")
		}
	}
	// A user's READY lists their DMs and group DMs (a bot's lists none).
	for _, ch := range r.PrivateChannels {
		if !isBridgedChannel(ch) {
			continue
		}
		c.resyncChannel(ctx, ch)
	}
}

func (c *Client) onResumed(s *discordgo.Session, r *discordgo.Resumed) {
	c.login.Log.Info().Msg("Resumed the Discord gateway session")
	c.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
}

// onDisconnect follows every close of the gateway connection: a dropped
// one is reconnected (resuming the session), one Disconnect closed is not.
func (c *Client) onDisconnect(s *discordgo.Session, d *discordgo.Disconnect) {
	if c.isStopped() {
		return
	}
	// connectLoop reports CONNECTING, then CONNECTED once resumed;
	// TRANSIENT_DISCONNECT is for failed attempts only (bridgev2 schedules a
	// notice for it, racily: see the -race run of TestBridgeEndToEnd).
	c.reconnect()
}

// portalKey is the portal of a Discord channel for this login.
func (c *Client) portalKey(channelID string) networkid.PortalKey {
	return networkid.PortalKey{ID: networkid.PortalID(channelID), Receiver: c.login.ID}
}

// channel looks a channel up in discordgo's state, then over REST.
func (c *Client) channel(ctx context.Context, channelID string) (*discordgo.Channel, error) {
	if ch, err := c.session.State.Channel(channelID); err == nil {
		return ch, nil
	}
	ch, err := c.session.Channel(channelID, discordgo.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("discord: get channel %s: %w", channelID, err)
	}
	// Keep it (DMs are not in READY) so the next event needs no request.
	if err := c.session.State.ChannelAdd(ch); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Str("discord_channel_id", ch.ID).Msg("Caching a channel")
	}
	return ch, nil
}

// isBridgedChannel reports whether a channel gets a portal: text channels
// and DMs (threads live in their parent's portal).
func isBridgedChannel(ch *discordgo.Channel) bool {
	switch ch.Type {
	case discordgo.ChannelTypeGuildText, discordgo.ChannelTypeGuildNews, discordgo.ChannelTypeDM, discordgo.ChannelTypeGroupDM:
		return true
	}
	return false
}

// guildPortalPrefix marks the portal of a guild: a space holding the
// portals of its channels.
const guildPortalPrefix = "guild-"

// GetChatInfo describes a channel's portal room, or a guild's space.
func (c *Client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	if guildID, ok := strings.CutPrefix(string(portal.ID), guildPortalPrefix); ok {
		return c.guildInfo(ctx, guildID)
	}
	ch, err := c.channel(ctx, string(portal.ID))
	if err != nil {
		return nil, err
	}
	if !isBridgedChannel(ch) {
		return nil, fmt.Errorf("discord: channel %s (type %d) is not bridged", ch.ID, ch.Type)
	}
	return c.chatInfo(ch), nil
}

func (c *Client) chatInfo(ch *discordgo.Channel) *bridgev2.ChatInfo {
	self := bridgev2.ChatMember{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: networkid.UserID(c.selfID)}, Membership: event.MembershipJoin}
	if ch.Type == discordgo.ChannelTypeDM {
		members := &bridgev2.ChatMemberList{IsFull: true, Members: []bridgev2.ChatMember{self}}
		roomType := database.RoomTypeDM
		for _, u := range ch.Recipients {
			members.OtherUserID = networkid.UserID(u.ID)
			members.Members = append(members.Members, bridgev2.ChatMember{EventSender: bridgev2.EventSender{Sender: networkid.UserID(u.ID)}, Membership: event.MembershipJoin})
		}
		return &bridgev2.ChatInfo{Members: members, Type: &roomType}
	}
	if ch.Type == discordgo.ChannelTypeGroupDM {
		return groupDMInfo(ch, self)
	}
	roomType := database.RoomTypeDefault
	name, topic := "#"+ch.Name, ch.Topic
	guildID := ch.GuildID
	space := networkid.PortalID(guildPortalPrefix + guildID)
	return &bridgev2.ChatInfo{
		Name:     &name,
		Topic:    &topic,
		Type:     &roomType,
		ParentID: &space,
		Members:  &bridgev2.ChatMemberList{Members: []bridgev2.ChatMember{self}},
		ExtraUpdates: func(ctx context.Context, p *bridgev2.Portal) bool {
			meta, ok := p.Metadata.(*PortalMetadata)
			if !ok {
				return false
			}
			changed := meta.GuildID != guildID
			meta.GuildID = guildID
			return (!c.userToken && c.offerRelay(p, meta)) || changed
		},
	}
}

// groupDMInfo describes a group DM's room: its name (or its members'),
// and its members.
func groupDMInfo(ch *discordgo.Channel, self bridgev2.ChatMember) *bridgev2.ChatInfo {
	roomType := database.RoomTypeGroupDM
	members := &bridgev2.ChatMemberList{IsFull: true, Members: []bridgev2.ChatMember{self}}
	var names []string
	for _, u := range ch.Recipients {
		members.Members = append(members.Members, bridgev2.ChatMember{EventSender: bridgev2.EventSender{Sender: networkid.UserID(u.ID)}, Membership: event.MembershipJoin})
		names = append(names, cmp.Or(u.GlobalName, u.Username))
	}
	name := cmp.Or(ch.Name, strings.Join(names, ", "))
	return &bridgev2.ChatInfo{Name: &name, Type: &roomType, Members: members}
}

// guildInfo describes a guild's space.
func (c *Client) guildInfo(ctx context.Context, guildID string) (*bridgev2.ChatInfo, error) {
	guild, err := c.session.State.Guild(guildID)
	if err != nil {
		if guild, err = c.session.Guild(guildID, discordgo.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("discord: get guild %s: %w", guildID, err)
		}
	}
	roomType := database.RoomTypeSpace
	self := bridgev2.ChatMember{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: networkid.UserID(c.selfID)}, Membership: event.MembershipJoin}
	return &bridgev2.ChatInfo{
		Name:    &guild.Name,
		Type:    &roomType,
		Members: &bridgev2.ChatMemberList{Members: []bridgev2.ChatMember{self}},
	}, nil
}

// GetUserInfo describes a Discord user's ghost.
func (c *Client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	if isWebhookGhost(ghost.ID) {
		return c.webhookAuthorInfo(ghost.ID), nil
	}
	u, err := c.session.User(string(ghost.ID), discordgo.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("discord: get user %s: %w", ghost.ID, err)
	}
	name := u.GlobalName
	if name == "" {
		name = u.Username
	}
	info := &bridgev2.UserInfo{
		Name:        &name,
		IsBot:       &u.Bot,
		Identifiers: []string{"discord:" + u.Username},
	}
	if u.Avatar != "" {
		avatarURL := u.AvatarURL("256")
		info.Avatar = &bridgev2.Avatar{
			ID:  networkid.AvatarID(u.Avatar),
			Get: func(ctx context.Context) ([]byte, error) { return c.connector.download(ctx, avatarURL, maxAvatarBytes) },
		}
	}
	return info, nil
}

// maxAvatarBytes bounds an avatar download.
const maxAvatarBytes = 10 << 20

// ResolveIdentifier finds a Discord user by ID and, if asked, opens a DM.
func (c *Client) ResolveIdentifier(ctx context.Context, identifier string, createChat bool) (*bridgev2.ResolveIdentifierResponse, error) {
	if !isSnowflake(identifier) {
		return nil, fmt.Errorf("%w: %q is not a Discord user ID", bridgev2.ErrResolveIdentifierTryNext, identifier)
	}
	userID := networkid.UserID(identifier)
	ghost, err := c.connector.br.GetGhostByID(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("discord: get ghost: %w", err)
	}
	info, err := c.GetUserInfo(ctx, ghost)
	if err != nil {
		return nil, err
	}
	resp := &bridgev2.ResolveIdentifierResponse{Ghost: ghost, UserID: userID, UserInfo: info}
	if createChat {
		ch, err := c.session.UserChannelCreate(identifier, discordgo.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("discord: open DM with %s: %w", identifier, err)
		}
		resp.Chat = &bridgev2.CreateChatResponse{PortalKey: c.portalKey(ch.ID), PortalInfo: c.chatInfo(ch)}
	}
	return resp, nil
}

// isSnowflake reports whether s looks like a Discord ID.
func isSnowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// GetCapabilities says what a portal supports.
func (c *Client) GetCapabilities(ctx context.Context, portal *bridgev2.Portal) *event.RoomFeatures {
	anyFile := &event.FileFeatures{
		MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelFullySupported},
		Caption:   event.CapLevelFullySupported,
		MaxSize:   c.connector.mediaLimit(),
	}
	return &event.RoomFeatures{
		ID: "org.matrixos.discord.capabilities.2026_12",
		Formatting: event.FormattingFeatureMap{
			event.FmtBold: event.CapLevelFullySupported, event.FmtItalic: event.CapLevelFullySupported,
			event.FmtUnderline: event.CapLevelFullySupported, event.FmtStrikethrough: event.CapLevelFullySupported,
			event.FmtInlineCode: event.CapLevelFullySupported, event.FmtCodeBlock: event.CapLevelFullySupported,
			event.FmtSpoiler: event.CapLevelFullySupported, event.FmtBlockquote: event.CapLevelFullySupported,
			event.FmtInlineLink: event.CapLevelFullySupported, event.FmtUserLink: event.CapLevelFullySupported,
		},
		File: event.FileFeatureMap{
			event.MsgImage: anyFile, event.MsgVideo: anyFile, event.MsgAudio: anyFile, event.MsgFile: anyFile,
		},
		MaxTextLength: maxContentLength,
		Thread:        event.CapLevelFullySupported,
		Reply:         event.CapLevelFullySupported,
		Edit:          event.CapLevelFullySupported,
		Delete:        event.CapLevelFullySupported,
		Reaction:      event.CapLevelFullySupported,
		// Relayed messages carry their sender's name and avatar (see
		// relay.go); bridgev2 need not format them.
		PerMessageProfileRelay: true,
	}
}

// offerRelay makes the bot login the relay of a guild channel's portal the
// first time the portal is synced, so that Matrix users who have not logged
// in can write there (through a webhook). A relay unset later with
// unset-relay stays unset.
func (c *Client) offerRelay(p *bridgev2.Portal, meta *PortalMetadata) bool {
	if meta.RelayOffered {
		return false
	}
	meta.RelayOffered = true
	if p.Relay == nil {
		p.Relay, p.RelayLoginID = c.login, c.login.ID
	}
	return true
}
