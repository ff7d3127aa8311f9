package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Client is one Slack login's bridgev2.NetworkAPI: a Web API client with
// the bot token and a Socket Mode connection with the app-level token.
type Client struct {
	connector *Connector
	login     *bridgev2.UserLogin
	meta      *UserLoginMetadata
	api       *slackapi.Client
	limits    *rateLimiter

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ bridgev2.NetworkAPI                  = (*Client)(nil)
	_ bridgev2.EditHandlingNetworkAPI      = (*Client)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.ReactionHandlingNetworkAPI  = (*Client)(nil)
)

func newClient(c *Connector, login *bridgev2.UserLogin) *Client {
	meta, _ := login.Metadata.(*UserLoginMetadata)
	if meta == nil {
		meta = &UserLoginMetadata{}
	}
	return &Client{
		connector: c,
		login:     login,
		meta:      meta,
		api:       c.newAPI(meta.BotToken, meta.AppToken),
		limits:    newRateLimiter(),
	}
}

// newAPI returns a slack-go client for the configured API URL.
func (c *Connector) newAPI(botToken, appToken string) *slackapi.Client {
	opts := []slackapi.Option{
		slackapi.OptionAppLevelToken(appToken),
		slackapi.OptionHTTPClient(c.httpClient),
		slackapi.OptionLog(discardLogger{}),
	}
	if c.Config.APIURL != "" {
		opts = append(opts, slackapi.OptionAPIURL(c.Config.APIURL))
	}
	return slackapi.New(botToken, opts...)
}

// discardLogger silences slack-go's own logging; the connector logs what
// matters through zerolog.
type discardLogger struct{}

func (discardLogger) Output(int, string) error { return nil }

// Connect opens Socket Mode in the background and handles its events until
// Disconnect.
func (sc *Client) Connect(context.Context) {
	defer sc.connector.guard.Recover() // bridgev2's reconnect calls it from a goroutine of its own
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cancel != nil {
		return
	}
	if !sc.IsLoggedIn() {
		sc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateBadCredentials, Error: "slack-no-token"})
		return
	}
	ctx, cancel := context.WithCancel(sc.login.Log.WithContext(sc.connector.Bridge.BackgroundCtx))
	sc.cancel = cancel
	sc.done = make(chan struct{})
	sc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnecting})
	done := sc.done
	sc.connector.guard.Go(func() { sc.run(ctx, done) })
}

// Disconnect closes Socket Mode and waits for the event loop to end.
// Envelopes not acknowledged by then are delivered again on the next
// connection.
func (sc *Client) Disconnect() {
	sc.mu.Lock()
	cancel, done := sc.cancel, sc.done
	sc.cancel, sc.done = nil, nil
	sc.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// IsLoggedIn reports whether the login has its tokens.
func (sc *Client) IsLoggedIn() bool {
	return sc.meta.BotToken != "" && sc.meta.AppToken != ""
}

// LogoutRemote disconnects; the app's tokens stay valid in Slack until
// the app is uninstalled.
func (sc *Client) LogoutRemote(context.Context) {
	sc.Disconnect()
}

// IsThisUser reports whether a Slack user is the app's bot user.
func (sc *Client) IsThisUser(_ context.Context, userID networkid.UserID) bool {
	return userID == sc.botGhostID()
}

func (sc *Client) botGhostID() networkid.UserID {
	return ghostID(sc.meta.TeamID, sc.meta.BotUserID)
}

func (sc *Client) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	log := zerolog.Ctx(ctx)
	sm := socketmode.New(sc.api, socketmode.OptionLog(discardLogger{}))
	runDone := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				runDone <- fmt.Errorf("slack-go Socket Mode panicked: %v", v)
			}
		}()
		runDone <- sm.RunContext(ctx)
	}()
	syncs := make(chan bool, 1)
	go sc.syncLoop(ctx, syncs)
	for {
		select {
		case <-ctx.Done():
			<-runDone
			return
		case err := <-runDone:
			if ctx.Err() == nil {
				log.Err(err).Msg("Slack Socket Mode stopped")
				sc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateUnknownError, Error: "slack-socket-mode", Message: fmt.Sprint(err)})
			}
			return
		case evt := <-sm.Events:
			sc.dispatchSocketEvent(ctx, sm, evt, syncs)
		}
	}
}

// dispatchSocketEvent handles one Socket Mode event. A panic while handling
// it (a bug meeting input nobody foresaw) is contained to that event: it is
// logged and reported as a bridge state, and the envelope is acknowledged
// so that Slack does not deliver the poison again; the events after it are
// handled as usual.
func (sc *Client) dispatchSocketEvent(ctx context.Context, sm *socketmode.Client, evt socketmode.Event, syncs chan<- bool) {
	defer sc.recoverPanic(ctx, "handling a Slack event", func() {
		if evt.Request != nil && evt.Request.EnvelopeID != "" {
			(&envelopeAck{sm: sm, id: evt.Request.EnvelopeID}).ack(ctx)
		}
	})
	if hook := socketEventHook.Load(); hook != nil {
		(*hook)(evt)
	}
	sc.handleSocketEvent(ctx, sm, evt, syncs)
}

// socketEventHook, when set (by tests only), sees each Socket Mode event
// before it is handled.
var socketEventHook atomic.Pointer[func(socketmode.Event)]

// recoverPanic, deferred, turns a panic of the goroutine into a logged
// error and an unknown-error bridge state instead of a crash of the whole
// node, then runs cleanup (nil for none).
func (sc *Client) recoverPanic(ctx context.Context, what string, cleanup func()) {
	v := recover()
	if v == nil {
		return
	}
	zerolog.Ctx(ctx).Error().Any("panic", v).Str("stack", string(debug.Stack())).Msg("Panic while " + what)
	sc.login.BridgeState.Send(status.BridgeState{
		StateEvent: status.StateUnknownError, Error: "slack-panic", Message: fmt.Sprintf("panic while %s: %v", what, v),
	})
	if cleanup != nil {
		cleanup()
	}
}

func (sc *Client) handleSocketEvent(ctx context.Context, sm *socketmode.Client, evt socketmode.Event, syncs chan<- bool) {
	log := zerolog.Ctx(ctx)
	switch evt.Type {
	case socketmode.EventTypeConnected:
		sc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
		// Every connection, not only the first: whatever was posted while
		// the socket was down and Slack gave up delivering is in the history.
		select {
		case syncs <- true:
		default: // a sync is already waiting to run
		}
	case socketmode.EventTypeConnectionError:
		log.Warn().Any("error", evt.Data).Msg("Slack Socket Mode connection failed, retrying")
		sc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: "slack-connection-error"})
	case socketmode.EventTypeInvalidAuth:
		log.Error().Msg("Slack refused the app-level token")
		sc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateBadCredentials, Error: "slack-invalid-auth"})
	case socketmode.EventTypeErrorBadMessage:
		sc.dropBadEnvelope(ctx, sm, evt)
	case socketmode.EventTypeEventsAPI:
		sc.handleEventsAPI(ctx, sm, evt)
	case socketmode.EventTypeInteractive, socketmode.EventTypeSlashCommand:
		if evt.Request != nil {
			_ = sm.Ack(*evt.Request)
		}
	default:
		log.Trace().Str("type", string(evt.Type)).Msg("Slack Socket Mode event")
	}
}

// dropBadEnvelope acknowledges an envelope slack-go could not parse, so that
// Slack does not send it again, and logs it: bad input is dropped, never
// retried forever.
func (sc *Client) dropBadEnvelope(ctx context.Context, sm *socketmode.Client, evt socketmode.Event) {
	bad, _ := evt.Data.(*socketmode.ErrorBadMessage)
	if bad == nil {
		return
	}
	envelopeID := envelopeIDOf(bad.Message)
	zerolog.Ctx(ctx).Warn().Err(bad.Cause).Str("envelope_id", envelopeID).Int("size", len(bad.Message)).
		Msg("Dropping a Slack event that could not be parsed")
	if envelopeID != "" {
		_ = sm.AckCtx(ctx, envelopeID, nil)
	}
}

// syncLoop runs syncChannels once per request until ctx is done, one at a
// time: the first after the socket connects updates every portal's info as
// well, the later ones (after reconnects) only catch up on messages.
func (sc *Client) syncLoop(ctx context.Context, requests <-chan bool) {
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-requests:
			sc.syncChannels(ctx, first)
			first = false
		}
	}
}

// syncChannels catches up on the messages of every conversation the bot user
// is in and, with resync, creates or updates their portals.
func (sc *Client) syncChannels(ctx context.Context, resync bool) {
	defer sc.recoverPanic(ctx, "syncing Slack conversations", nil)
	log := zerolog.Ctx(ctx)
	cursor := ""
	for {
		params := &slackapi.GetConversationsParameters{
			Types: []string{"public_channel", "private_channel", "mpim", "im"}, ExcludeArchived: true,
			Limit: 200, Cursor: cursor,
		}
		type page struct {
			channels []slackapi.Channel
			next     string
		}
		p, err := callSlack(ctx, sc.limits, "conversations.list", "", func() (page, error) {
			channels, next, err := sc.api.GetConversationsContext(ctx, params)
			return page{channels, next}, err
		})
		if err != nil {
			log.Err(err).Msg("Failed to list Slack conversations")
			return
		}
		for _, ch := range p.channels {
			if !ch.IsMember && !ch.IsIM {
				continue
			}
			if resync {
				sc.queueChatResync(ctx, ch.ID)
			}
			sc.catchUp(ctx, ch.ID)
		}
		if p.next == "" {
			return
		}
		cursor = p.next
	}
}

func (sc *Client) queueChatResync(ctx context.Context, channelID string) {
	res := sc.connector.Bridge.QueueRemoteEvent(sc.login, &simplevent.ChatResync{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventChatResync,
			PortalKey:    portalKey(sc.meta.TeamID, channelID),
			CreatePortal: true,
			LogContext: func(c zerolog.Context) zerolog.Context {
				return c.Str("slack_channel", channelID)
			},
		},
		GetChatInfoFunc: sc.GetChatInfo,
	})
	if res.Error != nil {
		zerolog.Ctx(ctx).Err(res.Error).Str("slack_channel", channelID).Msg("Failed to sync a Slack conversation")
	}
}

// GetChatInfo describes a conversation: name, topic, type and members.
func (sc *Client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	_, channelID, err := parsePortalID(portal.ID)
	if err != nil {
		return nil, err
	}
	ch, err := callSlack(ctx, sc.limits, "conversations.info", "", func() (*slackapi.Channel, error) {
		return sc.api.GetConversationInfoContext(ctx, &slackapi.GetConversationInfoInput{ChannelID: channelID})
	})
	if err != nil {
		return nil, err
	}
	members, err := sc.channelMembers(ctx, channelID)
	if err != nil {
		return nil, err
	}
	info := &bridgev2.ChatInfo{
		Members: &bridgev2.ChatMemberList{IsFull: true, MemberMap: bridgev2.ChatMemberMap{}},
	}
	for _, m := range members {
		info.Members.MemberMap.Set(bridgev2.ChatMember{EventSender: sc.sender(m, ""), Membership: event.MembershipJoin})
	}
	roomType := database.RoomTypeDefault
	switch {
	case ch.IsIM:
		roomType = database.RoomTypeDM
		info.Members.OtherUserID = ghostID(sc.meta.TeamID, ch.User)
		info.Members.MemberMap.Set(bridgev2.ChatMember{EventSender: sc.sender(ch.User, ""), Membership: event.MembershipJoin})
		info.Members.MemberMap.Set(bridgev2.ChatMember{EventSender: sc.sender(sc.meta.BotUserID, ""), Membership: event.MembershipJoin})
	case ch.IsMpIM:
		roomType = database.RoomTypeGroupDM
	default:
		name := "#" + ch.Name
		topic := ch.Topic.Value
		info.Name, info.Topic = &name, &topic
	}
	info.Type = &roomType
	return info, nil
}

func (sc *Client) channelMembers(ctx context.Context, channelID string) ([]string, error) {
	var all []string
	cursor := ""
	for {
		type page struct {
			members []string
			next    string
		}
		p, err := callSlack(ctx, sc.limits, "conversations.members", "", func() (page, error) {
			members, next, err := sc.api.GetUsersInConversationContext(ctx, &slackapi.GetUsersInConversationParameters{
				ChannelID: channelID, Cursor: cursor, Limit: 500,
			})
			return page{members, next}, err
		})
		if err != nil {
			return nil, err
		}
		all = append(all, p.members...)
		if p.next == "" || len(all) >= maxSyncedMembers {
			return all, nil
		}
		cursor = p.next
	}
}

// maxSyncedMembers bounds the members synced into one portal.
const maxSyncedMembers = 5000

// sender is the bridgev2 sender of a Slack user (or, with no user, a bot).
// The app's own bot user is "from me": the Matrix user who logged in.
func (sc *Client) sender(userID, botID string) bridgev2.EventSender {
	if userID == sc.meta.BotUserID || (userID == "" && botID != "" && botID == sc.meta.BotID) {
		return bridgev2.EventSender{IsFromMe: true, SenderLogin: sc.login.ID, Sender: sc.botGhostID()}
	}
	if userID == "" {
		userID = botID
	}
	return bridgev2.EventSender{Sender: ghostID(sc.meta.TeamID, userID)}
}

// isOwn reports whether a Slack message or action comes from the app's bot
// user, that is from this bridge: its echo is not bridged back.
func (sc *Client) isOwn(userID, botID string) bool {
	return userID == sc.meta.BotUserID || (botID != "" && botID == sc.meta.BotID)
}

// GetUserInfo fetches a Slack user's name and avatar for their ghost.
func (sc *Client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	_, userID, ok := parseGhostID(ghost.ID)
	if !ok {
		return nil, fmt.Errorf("malformed Slack ghost ID %q", ghost.ID)
	}
	if userID[0] == 'B' {
		// A bot without a user (an integration's messages): no profile.
		name, isBot := userID, true
		return &bridgev2.UserInfo{Name: &name, IsBot: &isBot}, nil
	}
	user, err := callSlack(ctx, sc.limits, "users.info", "", func() (*slackapi.User, error) {
		return sc.api.GetUserInfoContext(ctx, userID)
	})
	if err != nil {
		return nil, err
	}
	name := displayName(user)
	isBot := user.IsBot
	info := &bridgev2.UserInfo{Name: &name, IsBot: &isBot, Identifiers: []string{"slack:" + user.ID}}
	if avatarURL := user.Profile.Image512; avatarURL != "" {
		info.Avatar = &bridgev2.Avatar{
			ID:  networkid.AvatarID(user.Profile.AvatarHash + "|" + avatarURL),
			Get: func(ctx context.Context) ([]byte, error) { return sc.connector.fetchAvatar(ctx, avatarURL) },
		}
	}
	return info, nil
}

func displayName(u *slackapi.User) string {
	for _, name := range []string{u.Profile.DisplayName, u.Profile.RealName, u.RealName, u.Name} {
		if name != "" {
			return name
		}
	}
	return u.ID
}

// maxAvatarSize bounds a profile picture.
const maxAvatarSize = 5 << 20

// fetchAvatar downloads a profile picture (public, no token sent).
func (c *Connector) fetchAvatar(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading avatar: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading avatar: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAvatarSize+1))
	if err != nil {
		return nil, fmt.Errorf("downloading avatar: %w", err)
	}
	if len(data) > maxAvatarSize {
		return nil, fmt.Errorf("avatar larger than %d bytes", maxAvatarSize)
	}
	return data, nil
}

// downloadFile fetches a Slack file (url_private, with the bot token),
// refusing more than limit bytes.
func (sc *Client) downloadFile(ctx context.Context, url string, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := callSlack(ctx, sc.limits, "files.download", "", func() (struct{}, error) {
		buf.Reset()
		return struct{}{}, sc.api.GetFileContext(ctx, url, &limitedWriter{w: &buf, left: limit})
	})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var errFileTooLarge = errors.New("file too large")

type limitedWriter struct {
	w    io.Writer
	left int64
}

func (lw *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > lw.left {
		return 0, errFileTooLarge
	}
	lw.left -= int64(len(p))
	return lw.w.Write(p)
}

// GetCapabilities tells Matrix clients what Slack supports in a room.
func (sc *Client) GetCapabilities(context.Context, *bridgev2.Portal) *event.RoomFeatures {
	fileCaps := &event.FileFeatures{
		MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelFullySupported},
		Caption:   event.CapLevelFullySupported,
		MaxSize:   sc.connector.maxFileSize,
	}
	return &event.RoomFeatures{
		ID: "org.matrixos.slack.capabilities.2026_12",
		Formatting: event.FormattingFeatureMap{
			event.FmtBold: event.CapLevelFullySupported, event.FmtItalic: event.CapLevelFullySupported,
			event.FmtStrikethrough: event.CapLevelFullySupported, event.FmtInlineCode: event.CapLevelFullySupported,
			event.FmtCodeBlock: event.CapLevelFullySupported, event.FmtBlockquote: event.CapLevelFullySupported,
			event.FmtInlineLink: event.CapLevelFullySupported, event.FmtUserLink: event.CapLevelFullySupported,
		},
		File: event.FileFeatureMap{
			event.MsgImage: fileCaps, event.MsgFile: fileCaps, event.MsgVideo: fileCaps, event.MsgAudio: fileCaps,
		},
		MaxTextLength: maxSlackText,
		Thread:        event.CapLevelFullySupported,
		Reply:         event.CapLevelPartialSupport,
		Edit:          event.CapLevelFullySupported,
		Delete:        event.CapLevelFullySupported,
		Reaction:      event.CapLevelFullySupported,
		ReactionCount: 0,
	}
}

// maxSlackText is the longest text chat.postMessage takes.
const maxSlackText = 40000

// ghostMXID returns the Matrix user a Slack user appears as, and their name.
func (sc *Client) ghostMXID(ctx context.Context, slackUserID string) (id.UserID, string, bool) {
	ghost, err := sc.connector.Bridge.GetGhostByID(ctx, ghostID(sc.meta.TeamID, slackUserID))
	if err != nil || ghost == nil {
		return "", "", false
	}
	if ghost.Name == "" {
		ghost.UpdateInfoIfNecessary(ctx, sc.login, bridgev2.RemoteEventUnknown)
	}
	return ghost.Intent.GetMXID(), ghost.Name, true
}

// slackIDOfMXID returns the Slack user a Matrix user stands for: a ghost of
// this team.
func (sc *Client) slackIDOfMXID(mxid id.UserID) (string, bool) {
	ghost, ok := sc.connector.Bridge.Matrix.ParseGhostMXID(mxid)
	if !ok {
		return "", false
	}
	teamID, userID, ok := parseGhostID(ghost)
	return userID, ok && teamID == sc.meta.TeamID
}
