package discord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"
	"go.mau.fi/util/variationselector"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
)

// This file sends what Matrix users do to Discord, as the login's bot or
// user (or, for relayed users, through a webhook: relay.go).

var (
	errTooLong = bridgev2.WrapErrorInStatus(errors.New("the message is longer than Discord's 2000 characters")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported)
	errEmpty = bridgev2.WrapErrorInStatus(errors.New("the message is empty")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported)
	errNotEmoji = bridgev2.WrapErrorInStatus(errors.New("Discord reactions must be emoji")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(false).WithErrorReason(event.MessageStatusUnsupported)
	errEditOthers = bridgev2.WrapErrorInStatus(errors.New("only messages sent through the bridge can be edited on Discord")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported)
)

// threadNameLength bounds the name of a thread opened from Matrix.
const threadNameLength = 60

// HandleMatrixMessage sends a Matrix message to the portal's channel, or to
// the Discord thread of its m.thread root (opening the thread if needed).
// A relayed message (of a Matrix user who has not logged in) goes through
// the channel's webhook where the bot may use one.
func (c *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	portalChannel := string(msg.Portal.ID)
	channelID := portalChannel
	if msg.ThreadRoot != nil {
		var err error
		if channelID, err = c.threadChannel(ctx, channelID, msg.ThreadRoot); err != nil {
			return nil, err
		}
	}
	var relay *relayed
	var hook *discordgo.Webhook
	if msg.OrigSender != nil {
		r := c.relayedSender(msg.OrigSender)
		relay = &r
		var err error
		if hook, err = c.relayWebhook(ctx, msg.Portal); err != nil {
			return nil, err
		}
	}
	send, err := c.messageSend(ctx, msg.Content, relay, hook == nil)
	if err != nil {
		return nil, err
	}
	meta := &MessageMetadata{ChannelID: channelID}
	var sent *discordgo.Message
	if hook != nil {
		// Webhooks cannot reply: the reply is not marked on Discord.
		sent, err = c.executeWebhook(ctx, hook, portalChannel, channelID, send, relay)
		meta.WebhookID = hook.ID
	} else {
		if msg.ReplyTo != nil && messageChannel(msg.ReplyTo, portalChannel) == channelID {
			send.Reference = &discordgo.MessageReference{MessageID: string(msg.ReplyTo.ID), ChannelID: channelID}
		}
		sent, err = c.sendAsLogin(ctx, channelID, send)
	}
	if err != nil {
		return nil, fmt.Errorf("discord: send message: %w", err)
	}
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID:        networkid.MessageID(sent.ID),
		SenderID:  networkid.UserID(c.selfID),
		Timestamp: sent.Timestamp,
		Metadata:  meta,
	}}, nil
}

// sendAsLogin sends a message as the login's Discord user; a user login
// remembers it, so that its echo is not bridged back.
func (c *Client) sendAsLogin(ctx context.Context, channelID string, send *discordgo.MessageSend) (*discordgo.Message, error) {
	post := func() (*discordgo.Message, error) {
		return c.session.ChannelMessageSendComplex(channelID, send, discordgo.WithContext(ctx))
	}
	if !c.userToken {
		return post()
	}
	return c.own.send(post)
}

// relayWebhook is the webhook a relayed message in the portal goes
// through, or nil when it goes through the login itself with the sender's
// name in front: in DMs, and in channels where the bot may not manage
// webhooks (the room is told once).
func (c *Client) relayWebhook(ctx context.Context, portal *bridgev2.Portal) (*discordgo.Webhook, error) {
	if portal.RoomType == database.RoomTypeDM {
		return nil, nil
	}
	hook, err := c.channelWebhook(ctx, string(portal.ID))
	if errors.Is(err, errWebhooksDenied) {
		c.tellRelayFallback(ctx, portal)
		return nil, nil
	}
	return hook, err
}

// executeWebhook sends a relayed message through the channel's webhook,
// into the thread channelID when it is not the webhook's channel.
func (c *Client) executeWebhook(ctx context.Context, hook *discordgo.Webhook, portalChannel, channelID string, send *discordgo.MessageSend, relay *relayed) (*discordgo.Message, error) {
	params := &discordgo.WebhookParams{
		Content: send.Content, Username: relay.name, AvatarURL: relay.avatarURL,
		Files: send.Files, AllowedMentions: send.AllowedMentions,
	}
	threadID := ""
	if channelID != portalChannel {
		threadID = channelID
	}
	return c.session.WebhookThreadExecute(hook.ID, hook.Token, true, threadID, params, discordgo.WithContext(ctx))
}

// messageSend builds a Discord message from Matrix content: text as Discord
// markdown, media as an uploaded file with its caption. A relayed message
// sent by the login itself (byLogin) has its sender's name in front.
func (c *Client) messageSend(ctx context.Context, content *event.MessageEventContent, relay *relayed, byLogin bool) (*discordgo.MessageSend, error) {
	send := &discordgo.MessageSend{}
	var text string
	var mentioned []string
	switch content.MsgType {
	case event.MsgText, event.MsgNotice:
		text, mentioned = c.matrixToDiscord(content)
	case event.MsgEmote:
		text, mentioned = c.matrixToDiscord(content)
		text = "_" + text + "_"
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile:
		file, err := c.matrixFile(ctx, content)
		if err != nil {
			return nil, err
		}
		send.Files = []*discordgo.File{file}
		if content.FileName != "" && content.Body != content.FileName {
			text, mentioned = c.matrixToDiscord(content)
		}
	default:
		return nil, bridgev2.ErrUnsupportedMessageType
	}
	if relay != nil && byLogin {
		text = prefixName(relay.name, text)
	}
	if utf8.RuneCountInString(text) > maxContentLength {
		return nil, errTooLong
	}
	if strings.TrimSpace(text) == "" && len(send.Files) == 0 {
		return nil, errEmpty
	}
	send.Content = text
	send.AllowedMentions = &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}, Users: mentioned}
	return send, nil
}

// matrixFile downloads (and decrypts) a Matrix file for upload to Discord.
func (c *Client) matrixFile(ctx context.Context, content *event.MessageEventContent) (*discordgo.File, error) {
	limit := c.connector.mediaLimit()
	if content.Info != nil && int64(content.Info.Size) > limit {
		return nil, fmt.Errorf("%w: the file is larger than Discord's %d MiB", bridgev2.ErrMediaTooLarge, limit>>20)
	}
	uri := content.URL
	if content.File != nil {
		uri = content.File.URL
	}
	data, err := c.connector.br.Bot.DownloadMedia(ctx, uri, content.File)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bridgev2.ErrMediaDownloadFailed, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: the file is larger than Discord's %d MiB", bridgev2.ErrMediaTooLarge, limit>>20)
	}
	name := content.FileName
	if name == "" {
		name = content.Body
	}
	if name == "" || strings.ContainsAny(name, "/\\") {
		name = "file"
	}
	mimeType := ""
	if content.Info != nil {
		mimeType = content.Info.MimeType
	}
	if mimeType == "" {
		mimeType = http.DetectContentType(data)
	}
	return &discordgo.File{Name: name, ContentType: mimeType, Reader: bytes.NewReader(data)}, nil
}

// threadChannel is the Discord thread for a Matrix thread root: the thread
// opened on the root message (its ID is the message's), created if missing.
func (c *Client) threadChannel(ctx context.Context, portalChannel string, root *database.Message) (string, error) {
	if rootChannel := messageChannel(root, portalChannel); rootChannel != portalChannel {
		// The root is itself in a Discord thread: stay there.
		return rootChannel, nil
	}
	threadID := string(root.ID)
	if ch, err := c.channel(ctx, threadID); err == nil && ch.IsThread() {
		return threadID, nil
	}
	name := "Thread"
	if rootMsg, err := c.session.ChannelMessage(portalChannel, threadID, discordgo.WithContext(ctx)); err == nil && rootMsg.Content != "" {
		name = truncateRunes(strings.Join(strings.Fields(rootMsg.Content), " "), threadNameLength)
	}
	thread, err := c.session.MessageThreadStartComplex(portalChannel, threadID, &discordgo.ThreadStart{Name: name, AutoArchiveDuration: 1440}, discordgo.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("discord: open a thread on message %s: %w", threadID, err)
	}
	return thread.ID, nil
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// HandleMatrixEdit edits a message the bridge sent: through the webhook
// that sent it, if it was relayed through one. Only the message's Matrix
// sender may edit it.
func (c *Client) HandleMatrixEdit(ctx context.Context, msg *bridgev2.MatrixEdit) error {
	target := msg.EditTarget
	if string(target.SenderID) != c.selfID || (target.SenderMXID != "" && target.SenderMXID != msg.Event.Sender) {
		return errEditOthers
	}
	meta, _ := target.Metadata.(*MessageMetadata)
	portalChannel := string(msg.Portal.ID)
	hook, err := c.relayedWebhook(ctx, portalChannel, meta)
	if err != nil {
		return err
	}
	text, mentioned := c.matrixToDiscord(msg.Content)
	if msg.Content.MsgType == event.MsgEmote {
		text = "_" + text + "_"
	}
	if msg.OrigSender != nil && hook == nil {
		text = prefixName(c.relayedSender(msg.OrigSender).name, text)
	}
	if utf8.RuneCountInString(text) > maxContentLength {
		return errTooLong
	}
	if strings.TrimSpace(text) == "" {
		return errEmpty
	}
	channelID := messageChannel(target, portalChannel)
	allowed := &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}, Users: mentioned}
	if hook != nil {
		return c.editWebhookMessage(ctx, hook, string(target.ID), threadOf(portalChannel, channelID), &discordgo.WebhookEdit{Content: &text, AllowedMentions: allowed})
	}
	_, err = c.session.ChannelMessageEditComplex(&discordgo.MessageEdit{
		ID: string(target.ID), Channel: channelID, Content: &text, AllowedMentions: allowed,
	}, discordgo.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("discord: edit message: %w", err)
	}
	return nil
}

// threadOf is the thread_id of a webhook request in channelID: the
// channel, unless it is the webhook's own.
func threadOf(portalChannel, channelID string) string {
	if channelID == portalChannel {
		return ""
	}
	return channelID
}

// HandleMatrixMessageRemove deletes a message on Discord: a relayed one
// through the webhook that sent it.
func (c *Client) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) error {
	portalChannel := string(msg.Portal.ID)
	channelID := messageChannel(msg.TargetMessage, portalChannel)
	meta, _ := msg.TargetMessage.Metadata.(*MessageMetadata)
	hook, err := c.relayedWebhook(ctx, portalChannel, meta)
	if err != nil {
		return err
	}
	if hook != nil {
		return c.deleteWebhookMessage(ctx, hook, string(msg.TargetMessage.ID), threadOf(portalChannel, channelID))
	}
	if err := c.session.ChannelMessageDelete(channelID, string(msg.TargetMessage.ID), discordgo.WithContext(ctx)); err != nil {
		return fmt.Errorf("discord: delete message: %w", err)
	}
	return nil
}

// PreHandleMatrixReaction accepts unicode emoji; the bot reacts for everyone.
func (c *Client) PreHandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (bridgev2.MatrixReactionPreResponse, error) {
	key := msg.Content.RelatesTo.Key
	if !isEmoji(key) {
		return bridgev2.MatrixReactionPreResponse{}, errNotEmoji
	}
	// Discord names unicode emoji in their fully-qualified form: with a
	// variation selector only where Unicode requires one (❤️, not 👍️).
	discordEmoji := variationselector.FullyQualify(key)
	return bridgev2.MatrixReactionPreResponse{
		SenderID: networkid.UserID(c.selfID),
		EmojiID:  networkid.EmojiID(discordEmoji),
		Emoji:    key,
	}, nil
}

// isEmoji reports whether a reaction key can be a Discord unicode emoji:
// short, and made only of non-ASCII symbols (letters and custom images are
// not emoji).
func isEmoji(key string) bool {
	if key == "" || len(key) > 64 || strings.HasPrefix(key, "mxc://") {
		return false
	}
	for _, r := range key {
		if r < 0x80 && r != '#' && r != '*' && (r < '0' || r > '9') {
			return false
		}
	}
	r, _ := utf8.DecodeRuneInString(key)
	return r >= 0x80 || strings.ContainsRune(key, 0x20E3) // keycaps start with ASCII
}

// HandleMatrixReaction adds the bot's reaction on Discord.
func (c *Client) HandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (*database.Reaction, error) {
	channelID := messageChannel(msg.TargetMessage, string(msg.Portal.ID))
	err := c.session.MessageReactionAdd(channelID, string(msg.TargetMessage.ID), string(msg.PreHandleResp.EmojiID), discordgo.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("discord: add reaction: %w", err)
	}
	return nil, nil
}

// HandleMatrixReactionRemove removes the bot's reaction on Discord.
func (c *Client) HandleMatrixReactionRemove(ctx context.Context, msg *bridgev2.MatrixReactionRemove) error {
	reaction := msg.TargetReaction
	target, err := c.connector.br.DB.Message.GetFirstPartByID(ctx, c.login.ID, reaction.MessageID)
	if err != nil {
		return fmt.Errorf("discord: find reacted message: %w", err)
	}
	channelID := string(msg.Portal.ID)
	if target != nil {
		channelID = messageChannel(target, channelID)
	}
	err = c.session.MessageReactionRemove(channelID, string(reaction.MessageID), string(reaction.EmojiID), "@me", discordgo.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("discord: remove reaction: %w", err)
	}
	return nil
}
