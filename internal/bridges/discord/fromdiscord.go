package discord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
)

// This file turns gateway events (and messages fetched after a restart)
// into bridgev2 remote events.

func (c *Client) eventContext() context.Context {
	return c.login.Log.WithContext(context.Background())
}

// onGuildCreate resyncs the guild's channels (creating their portals) and
// fetches what each bridged channel and thread missed while no gateway
// session was open.
func (c *Client) onGuildCreate(s *discordgo.Session, g *discordgo.GuildCreate) {
	ctx := c.eventContext()
	for _, ch := range g.Channels {
		if ch.GuildID == "" {
			ch.GuildID = g.ID
		}
		if !isBridgedChannel(ch) {
			continue
		}
		c.resyncChannel(ctx, ch)
	}
	for _, th := range g.Threads {
		c.catchUp(ctx, th.ID, th.ParentID)
	}
}

func channelLogContext(channelID string) func(zerolog.Context) zerolog.Context {
	return func(c zerolog.Context) zerolog.Context { return c.Str("discord_channel_id", channelID) }
}

// catchUp fetches the messages of a channel (or of a thread of parentID)
// after the last one bridged, oldest first, and handles them as if they had
// come over the gateway; bridgev2 drops any it already has. Nothing is
// fetched for a channel without a portal or without bridged messages: it
// has no history here to continue. A channel is caught up once per gateway
// session; a failed fetch is tried again at the next GUILD_CREATE.
func (c *Client) catchUp(ctx context.Context, channelID, parentID string) {
	c.mu.Lock()
	done := c.caughtUp[channelID]
	c.mu.Unlock()
	if done {
		return
	}
	log := zerolog.Ctx(ctx).With().Str("discord_channel_id", channelID).Logger()
	after, err := c.lastBridgedID(ctx, channelID, parentID)
	if err != nil {
		log.Err(err).Msg("Finding the last bridged message to catch up from")
		return
	} else if after == "" {
		return
	}
	fetched := 0
	for fetched < c.connector.catchUpLimit() {
		page, err := c.session.ChannelMessages(channelID, 100, "", after, "", discordgo.WithContext(ctx))
		if err != nil {
			log.Err(err).Msg("Fetching missed messages")
			return
		}
		slices.SortFunc(page, func(a, b *discordgo.Message) int { return compareSnowflakes(a.ID, b.ID) })
		for _, m := range page {
			c.handleMessage(ctx, m)
			after = m.ID
		}
		fetched += len(page)
		if len(page) < 100 {
			break
		}
	}
	c.mu.Lock()
	c.caughtUp[channelID] = true
	c.mu.Unlock()
	if fetched > 0 {
		log.Info().Int("messages", fetched).Msg("Caught up on messages missed while disconnected")
	}
}

// lastBridgedID is the newest message received from Discord in a channel,
// or for a thread the newest of the thread (its root if nothing else); ""
// if none.
func (c *Client) lastBridgedID(ctx context.Context, channelID, parentID string) (string, error) {
	portalID := channelID
	if parentID != "" {
		portalID = parentID
	}
	portal, err := c.connector.br.GetExistingPortalByKey(ctx, c.portalKey(portalID))
	if err != nil || portal == nil || !portal.RoomCreated.IsSet() { // not MXID, which its room's creation writes unguarded
		return "", err
	}
	db := c.connector.br.DB.Message
	if parentID != "" {
		last, err := db.GetLastThreadMessage(ctx, portal.PortalKey, networkid.MessageID(channelID))
		if err != nil || last == nil {
			return "", err
		}
		return string(last.ID), nil
	}
	recent, err := db.GetLastNInPortal(ctx, portal.PortalKey, 200)
	if err != nil {
		return "", err
	}
	newest := ""
	for _, m := range recent {
		// A message sent from Matrix is newer than Discord messages typed
		// before it and missed meanwhile: only what came from Discord marks
		// where the channel was last read.
		fromDiscord := string(m.SenderID) != c.selfID
		if fromDiscord && messageChannel(m, portalID) == channelID && compareSnowflakes(string(m.ID), newest) > 0 {
			newest = string(m.ID)
		}
	}
	return newest, nil
}

// compareSnowflakes orders Discord IDs numerically ("" first).
func compareSnowflakes(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// messageChannel is the Discord channel a bridged message is in.
func messageChannel(m *database.Message, portalChannel string) string {
	if meta, ok := m.Metadata.(*MessageMetadata); ok && meta.ChannelID != "" {
		return meta.ChannelID
	}
	return portalChannel
}

// portalFor maps a Discord channel to its portal's channel: a thread's
// parent, or the channel itself. ok is false for channels not bridged.
func (c *Client) portalFor(ctx context.Context, channelID string) (portalChannel string, thread bool, ok bool) {
	ch, err := c.channel(ctx, channelID)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("discord_channel_id", channelID).Msg("Dropping an event of an unknown channel")
		return "", false, false
	}
	if ch.IsThread() {
		parent, err := c.channel(ctx, ch.ParentID)
		if err != nil || !isBridgedChannel(parent) {
			return "", false, false
		}
		return parent.ID, true, true
	}
	return ch.ID, false, isBridgedChannel(ch)
}

func (c *Client) sender(userID string) bridgev2.EventSender {
	return bridgev2.EventSender{Sender: networkid.UserID(userID), IsFromMe: userID == c.selfID}
}

func (c *Client) onMessageCreate(s *discordgo.Session, m *discordgo.MessageCreate) {
	c.handleMessage(c.eventContext(), m.Message)
}

// bridgedMessageTypes are the Discord message types with user content.
var bridgedMessageTypes = []discordgo.MessageType{discordgo.MessageTypeDefault, discordgo.MessageTypeReply}

// handleMessage queues a new Discord message. The bot's own messages, a
// user login's messages sent from Matrix, and those of the bridge's
// webhooks are what the bridge sent: they are already in the room. A user
// login's messages typed on Discord are bridged as the user's.
func (c *Client) handleMessage(ctx context.Context, m *discordgo.Message) {
	if m.Author == nil || c.isOwnEcho(m) || !slices.Contains(bridgedMessageTypes, m.Type) {
		return
	}
	portalChannel, _, ok := c.portalFor(ctx, m.ChannelID)
	if !ok || c.isRelayEcho(ctx, portalChannel, m) {
		return
	}
	c.login.QueueRemoteEvent(&simplevent.Message[*discordgo.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    c.portalKey(portalChannel),
			CreatePortal: true,
			Sender:       c.senderOf(m),
			Timestamp:    m.Timestamp,
			LogContext:   channelLogContext(m.ChannelID),
		},
		ID:                 networkid.MessageID(m.ID),
		Data:               m,
		ConvertMessageFunc: c.convertMessage,
	})
}

// isOwnEcho reports whether a message of the login's own Discord user is
// what the bridge sent: all of a bot's, those a user login sent from Matrix
// (edits of them included).
func (c *Client) isOwnEcho(m *discordgo.Message) bool {
	return m.Author.ID == c.selfID && (!c.userToken || c.own.isEcho(m.ID))
}

// isRelayEcho reports whether a message was sent by one of the bridge's
// webhooks of the portal's channel: a relayed Matrix message.
func (c *Client) isRelayEcho(ctx context.Context, portalChannel string, m *discordgo.Message) bool {
	return m.WebhookID != "" && c.isOwnWebhook(ctx, portalChannel, m.WebhookID)
}

// convertMessage turns a Discord message into Matrix parts: its text (part
// ""), then one part per attachment (part = attachment ID).
func (c *Client) convertMessage(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, m *discordgo.Message) (*bridgev2.ConvertedMessage, error) {
	meta := &MessageMetadata{ChannelID: m.ChannelID}
	cm := &bridgev2.ConvertedMessage{}
	if m.ChannelID != string(portal.ID) {
		root, err := c.connector.br.DB.Message.GetFirstPartByID(ctx, c.login.ID, networkid.MessageID(m.ChannelID))
		if err != nil {
			return nil, fmt.Errorf("discord: looking up thread root: %w", err)
		}
		if root != nil {
			rootID := root.ID
			cm.ThreadRoot = &rootID
		}
	}
	if m.MessageReference != nil && m.Type == discordgo.MessageTypeReply && m.MessageReference.MessageID != "" {
		cm.ReplyTo = &networkid.MessageOptionalPartID{MessageID: networkid.MessageID(m.MessageReference.MessageID)}
	}
	if m.Content != "" {
		cm.Parts = append(cm.Parts, &bridgev2.ConvertedMessagePart{
			Type: event.EventMessage, Content: c.textContent(m, m.Content), DBMetadata: meta,
		})
	}
	for _, a := range m.Attachments {
		cm.Parts = append(cm.Parts, c.convertAttachment(ctx, portal, intent, a, meta))
	}
	if len(cm.Parts) == 0 {
		cm.Parts = append(cm.Parts, &bridgev2.ConvertedMessagePart{
			Type:       event.EventMessage,
			Content:    &event.MessageEventContent{MsgType: event.MsgNotice, Body: "A Discord message with no text or files (a sticker or an embed), which is not bridged"},
			DBMetadata: meta,
		})
	}
	return cm, nil
}

// textContent converts Discord text to a Matrix text message with pills and
// m.mentions for the Discord users it mentions.
func (c *Client) textContent(m *discordgo.Message, text string) *event.MessageEventContent {
	res := &messageResolver{client: c, mentions: m.Mentions}
	body, formatted := discordToMatrix(text, res)
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: body, Mentions: &event.Mentions{UserIDs: res.mentioned}}
	if formatted != "" {
		content.Format = event.FormatHTML
		content.FormattedBody = formatted
	}
	return content
}

// messageResolver names the users and channels a message mentions.
type messageResolver struct {
	client    *Client
	mentions  []*discordgo.User
	mentioned []id.UserID
}

func (r *messageResolver) userMention(discordID string) (string, string) {
	name := ""
	for _, u := range r.mentions {
		if u.ID == discordID {
			name = u.GlobalName
			if name == "" {
				name = u.Username
			}
		}
	}
	mxid := r.client.connector.br.Matrix.FormatGhostMXID(networkid.UserID(discordID))
	if !slices.Contains(r.mentioned, mxid) {
		r.mentioned = append(r.mentioned, mxid)
	}
	return string(mxid), name
}

func (r *messageResolver) channelName(discordID string) string {
	if ch, err := r.client.session.State.Channel(discordID); err == nil {
		return ch.Name
	}
	return ""
}

// convertAttachment copies a Discord attachment into the Matrix media
// repository (encrypted when the room is). A file that cannot be bridged
// becomes a notice saying so, never a silent gap.
func (c *Client) convertAttachment(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, a *discordgo.MessageAttachment, meta *MessageMetadata) *bridgev2.ConvertedMessagePart {
	part := &bridgev2.ConvertedMessagePart{ID: networkid.PartID(a.ID), Type: event.EventMessage, DBMetadata: meta}
	content, err := c.uploadAttachment(ctx, portal, intent, a)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("attachment_id", a.ID).Msg("Bridging a Discord attachment failed")
		content = &event.MessageEventContent{MsgType: event.MsgNotice, Body: fmt.Sprintf("The file %s could not be bridged: %v", a.Filename, err)}
	}
	part.Content = content
	return part
}

func (c *Client) uploadAttachment(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, a *discordgo.MessageAttachment) (*event.MessageEventContent, error) {
	limit := c.connector.mediaLimit()
	if int64(a.Size) > limit {
		return nil, fmt.Errorf("%d bytes is more than the %d bytes bridged", a.Size, limit)
	}
	data, err := c.connector.download(ctx, a.URL, limit)
	if err != nil {
		return nil, err
	}
	mimeType := a.ContentType
	if mimeType == "" {
		mimeType = http.DetectContentType(data)
	}
	mxc, file, err := intent.UploadMedia(ctx, portal.MXID, data, a.Filename, mimeType)
	if err != nil {
		return nil, fmt.Errorf("upload to Matrix: %w", err)
	}
	content := &event.MessageEventContent{
		MsgType:  bridges.MessageTypeFor(mimeType),
		Body:     a.Filename,
		FileName: a.Filename,
		URL:      mxc,
		File:     file,
		Info:     &event.FileInfo{MimeType: mimeType, Size: len(data), Width: a.Width, Height: a.Height},
	}
	return content, nil
}

// errTooLarge is returned by download for a body over its limit.
var errTooLarge = errors.New("file too large")

// download GETs a Discord CDN URL, reading at most limit bytes.
func (c *Connector) download(ctx context.Context, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download: HTTP %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("download: %w (over %d bytes)", errTooLarge, limit)
	}
	return data, nil
}

// onMessageUpdate bridges edits of a message's text. Updates without an
// edit timestamp (embeds resolving) change nothing a user wrote.
func (c *Client) onMessageUpdate(s *discordgo.Session, m *discordgo.MessageUpdate) {
	if m.Author == nil || c.isOwnEcho(m.Message) || m.EditedTimestamp == nil {
		return
	}
	ctx := c.eventContext()
	portalChannel, _, ok := c.portalFor(ctx, m.ChannelID)
	if !ok || c.isRelayEcho(ctx, portalChannel, m.Message) {
		return
	}
	c.login.QueueRemoteEvent(&simplevent.Message[*discordgo.Message]{
		EventMeta: simplevent.EventMeta{
			Type:       bridgev2.RemoteEventEdit,
			PortalKey:  c.portalKey(portalChannel),
			Sender:     c.senderOf(m.Message),
			Timestamp:  *m.EditedTimestamp,
			LogContext: channelLogContext(m.ChannelID),
		},
		ID:              networkid.MessageID(m.ID),
		TargetMessage:   networkid.MessageID(m.ID),
		Data:            m.Message,
		ConvertEditFunc: c.convertEdit,
	})
}

// convertEdit replaces the text part of a bridged message.
func (c *Client) convertEdit(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, existing []*database.Message, m *discordgo.Message) (*bridgev2.ConvertedEdit, error) {
	for _, part := range existing {
		if part.PartID != "" {
			continue
		}
		if m.Content == "" {
			return nil, fmt.Errorf("%w: edit removed the text", bridgev2.ErrIgnoringRemoteEvent)
		}
		return &bridgev2.ConvertedEdit{ModifiedParts: []*bridgev2.ConvertedEditPart{{
			Part: part, Type: event.EventMessage, Content: c.textContent(m, m.Content),
		}}}, nil
	}
	return nil, fmt.Errorf("%w: the edited message had no text part", bridgev2.ErrIgnoringRemoteEvent)
}

func (c *Client) onMessageDelete(s *discordgo.Session, d *discordgo.MessageDelete) {
	ctx := c.eventContext()
	portalChannel, _, ok := c.portalFor(ctx, d.ChannelID)
	if !ok {
		return
	}
	c.login.QueueRemoteEvent(&simplevent.MessageRemove{
		EventMeta: simplevent.EventMeta{
			Type:       bridgev2.RemoteEventMessageRemove,
			PortalKey:  c.portalKey(portalChannel),
			LogContext: channelLogContext(d.ChannelID),
		},
		TargetMessage: networkid.MessageID(d.ID),
	})
}

func (c *Client) onReactionAdd(s *discordgo.Session, r *discordgo.MessageReactionAdd) {
	c.handleReaction(r.MessageReaction, bridgev2.RemoteEventReaction)
}

func (c *Client) onReactionRemove(s *discordgo.Session, r *discordgo.MessageReactionRemove) {
	c.handleReaction(r.MessageReaction, bridgev2.RemoteEventReactionRemove)
}

// handleReaction bridges a reaction of someone other than the bot: a
// unicode emoji as itself, a custom emoji as its :name:.
func (c *Client) handleReaction(r *discordgo.MessageReaction, kind bridgev2.RemoteEventType) {
	if r == nil || r.UserID == c.selfID || r.Emoji.Name == "" {
		return
	}
	ctx := c.eventContext()
	portalChannel, _, ok := c.portalFor(ctx, r.ChannelID)
	if !ok {
		return
	}
	emoji := r.Emoji.Name
	if r.Emoji.ID != "" {
		emoji = ":" + r.Emoji.Name + ":"
	}
	c.login.QueueRemoteEvent(&simplevent.Reaction{
		EventMeta: simplevent.EventMeta{
			Type:       kind,
			PortalKey:  c.portalKey(portalChannel),
			Sender:     c.sender(r.UserID),
			Timestamp:  time.Now(),
			LogContext: channelLogContext(r.ChannelID),
		},
		TargetMessage: networkid.MessageID(r.MessageID),
		EmojiID:       networkid.EmojiID(r.Emoji.APIName()),
		Emoji:         emoji,
	})
}

// resyncChannel has bridgev2 create or update the portal of a bridged
// channel and fetches the messages it missed.
func (c *Client) resyncChannel(ctx context.Context, ch *discordgo.Channel) {
	c.login.QueueRemoteEvent(&simplevent.ChatResync{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventChatResync,
			PortalKey:    c.portalKey(ch.ID),
			CreatePortal: true,
			LogContext:   channelLogContext(ch.ID),
		},
		ChatInfo: c.chatInfo(ch),
	})
	c.catchUp(ctx, ch.ID, "")
}
