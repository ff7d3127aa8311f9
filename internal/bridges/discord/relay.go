package discord

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// This file relays the messages of Matrix users who have not logged in
// (bridgev2's relay mode): in a guild channel through a webhook of the
// channel, under the Matrix user's name and avatar; without the Manage
// Webhooks permission (and in DMs) through the login with the name in
// front, "**Name**: text".

const (
	// webhookName is the name of the webhook the bridge creates per channel.
	webhookName = "Matrix bridge"
	// maxWebhookName is Discord's limit on a webhook message's author name.
	maxWebhookName = 80
	// webhookDeniedRetry is how long a channel whose webhooks the bot may
	// not manage is not asked again.
	webhookDeniedRetry = 10 * time.Minute
	// codeMissingPermissions is Discord's JSON error code for a missing
	// permission.
	codeMissingPermissions = 50013
)

// errWebhooksDenied is returned when the bot lacks Manage Webhooks.
var errWebhooksDenied = errors.New("the bot lacks the Manage Webhooks permission")

// webhooks remembers, per channel, the webhook the bridge relays through.
type webhooks struct {
	mu sync.Mutex
	// byChannel is the bridge's webhook of each channel asked about.
	byChannel map[string]*discordgo.Webhook
	// ours is the IDs of the bridge's webhooks, whose messages are echoes.
	ours map[string]bool
	// listed is the channels whose webhooks were listed for ours.
	listed map[string]bool
	// deniedUntil is when a channel refused to list or create webhooks
	// may be asked again.
	deniedUntil map[string]time.Time
	// told is the portal rooms told that relaying falls back to the bot.
	told map[id.RoomID]bool
}

func newWebhooks() *webhooks {
	return &webhooks{
		byChannel: map[string]*discordgo.Webhook{}, ours: map[string]bool{}, listed: map[string]bool{},
		deniedUntil: map[string]time.Time{}, told: map[id.RoomID]bool{},
	}
}

// channelWebhook returns the bridge's webhook of a guild channel, creating
// it if the channel has none: one the bot made and holds the token of.
func (c *Client) channelWebhook(ctx context.Context, channelID string) (*discordgo.Webhook, error) {
	w := c.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	if hook := w.byChannel[channelID]; hook != nil {
		return hook, nil
	}
	if time.Now().Before(w.deniedUntil[channelID]) {
		return nil, errWebhooksDenied
	}
	hooks, err := c.session.ChannelWebhooks(channelID, discordgo.WithContext(ctx))
	if err != nil {
		return nil, c.webhookError(channelID, "list webhooks", err)
	}
	w.listed[channelID] = true
	for _, hook := range hooks {
		if c.isBridgeWebhook(hook) {
			w.ours[hook.ID] = true
			if hook.Token != "" && w.byChannel[channelID] == nil {
				w.byChannel[channelID] = hook
			}
		}
	}
	if hook := w.byChannel[channelID]; hook != nil {
		return hook, nil
	}
	hook, err := c.session.WebhookCreate(channelID, webhookName, "", discordgo.WithContext(ctx))
	if err != nil {
		return nil, c.webhookError(channelID, "create a webhook", err)
	}
	w.ours[hook.ID] = true
	w.byChannel[channelID] = hook
	return hook, nil
}

// isBridgeWebhook reports whether a webhook is one the bridge's bot made.
func (c *Client) isBridgeWebhook(hook *discordgo.Webhook) bool {
	return hook.Type == discordgo.WebhookTypeIncoming && hook.User != nil && hook.User.ID == c.selfID
}

// webhookError turns a refusal for lack of permission into
// errWebhooksDenied (remembered for webhookDeniedRetry); the caller holds
// c.webhooks.mu.
func (c *Client) webhookError(channelID, what string, err error) error {
	var restErr *discordgo.RESTError
	if errors.As(err, &restErr) && restErr.Response != nil && restErr.Response.StatusCode == http.StatusForbidden {
		if restErr.Message == nil || restErr.Message.Code == codeMissingPermissions || restErr.Message.Code == 0 {
			c.webhooks.deniedUntil[channelID] = time.Now().Add(webhookDeniedRetry)
			return errWebhooksDenied
		}
	}
	return fmt.Errorf("discord: %s in channel %s: %w", what, channelID, err)
}

// isOwnWebhook reports whether a webhook of a channel is the bridge's: its
// messages are what the bridge relayed from Matrix. A channel's webhooks
// are listed once to learn those made before this run.
func (c *Client) isOwnWebhook(ctx context.Context, channelID, webhookID string) bool {
	w := c.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ours[webhookID] || w.listed[channelID] {
		return w.ours[webhookID]
	}
	hooks, err := c.session.ChannelWebhooks(channelID, discordgo.WithContext(ctx))
	if err != nil {
		// Without the permission to list them, the bot made none.
		zerolog.Ctx(ctx).Debug().Err(err).Str("discord_channel_id", channelID).Msg("Listing webhooks to recognize relayed messages")
		w.listed[channelID] = true
		return false
	}
	w.listed[channelID] = true
	for _, hook := range hooks {
		if c.isBridgeWebhook(hook) {
			w.ours[hook.ID] = true
		}
	}
	return w.ours[webhookID]
}

// relayed is how a Matrix user who has not logged in appears on Discord.
type relayed struct {
	name      string // their name, fit for a webhook
	avatarURL string // where Discord may fetch their avatar, or ""
}

// relayedSender describes the sender of a relayed event.
func (c *Client) relayedSender(sender *bridgev2.OrigSender) relayed {
	return relayed{name: webhookUsername(sender.DisambiguatedName), avatarURL: c.connector.publicMediaURL(sender.AvatarURL)}
}

// forbiddenInNames are what Discord refuses in a webhook message's author.
var forbiddenInNames = regexp.MustCompile(`(?i)clyde|discord`)

// webhookUsername fits a Matrix name to Discord's rules for a webhook
// message's author: 1 to 80 characters, neither "clyde" nor "discord".
func webhookUsername(name string) string {
	name = strings.Join(strings.Fields(name), " ")
	name = forbiddenInNames.ReplaceAllStringFunc(name, func(s string) string {
		return s[:1] + "\u200b" + s[1:] // a zero-width space breaks the word
	})
	if name == "" {
		name = "Matrix user"
	}
	return truncateRunes(name, maxWebhookName)
}

// publicMediaURL is where Discord may fetch a Matrix media file: under
// public_media_url, or "" when that is not set or the URI is not mxc.
func (c *Connector) publicMediaURL(uri id.ContentURIString) string {
	if c.Config.PublicMediaURL == "" || uri == "" {
		return ""
	}
	parsed, err := uri.Parse()
	if err != nil || parsed.IsEmpty() {
		return ""
	}
	base, err := baseURL(c.Config.PublicMediaURL, "")
	if err != nil {
		return ""
	}
	return base + "_matrix/media/v3/download/" + url.PathEscape(parsed.Homeserver) + "/" + url.PathEscape(parsed.FileID)
}

// prefixName is the fallback form of a relayed message: the sender's name
// in bold in front of the text.
func prefixName(name, text string) string {
	prefix := "**" + escapeDiscord(name) + "**:"
	if text == "" {
		return prefix
	}
	return prefix + " " + text
}

// tellRelayFallback says once per room that relayed messages go through the
// bot with the sender's name in front, for want of the webhook permission.
func (c *Client) tellRelayFallback(ctx context.Context, portal *bridgev2.Portal) {
	w := c.webhooks
	w.mu.Lock()
	told := w.told[portal.MXID]
	w.told[portal.MXID] = true
	w.mu.Unlock()
	if told {
		return
	}
	notice := &event.MessageEventContent{
		MsgType: event.MsgNotice,
		Body: "The Discord bot lacks the Manage Webhooks permission in this channel, so messages of Matrix users " +
			"who have not logged in are sent by the bot with their name in front. Give the bot that permission " +
			"to send them under each user's own name and avatar.",
	}
	_, err := c.connector.br.Bot.SendMessage(ctx, portal.MXID, event.EventMessage, &event.Content{Parsed: notice}, nil)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Telling the room that relaying falls back to the bot")
	}
}

// webhookMessageURL is a webhook message's URL, in a thread of the
// webhook's channel when threadID is set (discordgo's own edit and delete
// take no thread).
func webhookMessageURL(hook *discordgo.Webhook, messageID, threadID string) string {
	uri := discordgo.EndpointWebhookMessage(hook.ID, hook.Token, messageID)
	if threadID != "" {
		uri += "?" + url.Values{"thread_id": {threadID}}.Encode()
	}
	return uri
}

// editWebhookMessage changes the text of a message the webhook sent.
func (c *Client) editWebhookMessage(ctx context.Context, hook *discordgo.Webhook, messageID, threadID string, edit *discordgo.WebhookEdit) error {
	uri := webhookMessageURL(hook, messageID, threadID)
	bucket := discordgo.EndpointWebhookToken(hook.ID, "")
	if _, err := c.session.RequestWithBucketID(http.MethodPatch, uri, edit, bucket, discordgo.WithContext(ctx)); err != nil {
		return fmt.Errorf("discord: edit relayed message: %w", err)
	}
	return nil
}

// deleteWebhookMessage deletes a message the webhook sent.
func (c *Client) deleteWebhookMessage(ctx context.Context, hook *discordgo.Webhook, messageID, threadID string) error {
	uri := webhookMessageURL(hook, messageID, threadID)
	bucket := discordgo.EndpointWebhookToken(hook.ID, "")
	if _, err := c.session.RequestWithBucketID(http.MethodDelete, uri, nil, bucket, discordgo.WithContext(ctx)); err != nil {
		return fmt.Errorf("discord: delete relayed message: %w", err)
	}
	return nil
}

// relayedWebhook is the webhook a relayed message was sent through, or nil
// if it was sent by the login itself.
func (c *Client) relayedWebhook(ctx context.Context, portalChannel string, meta *MessageMetadata) (*discordgo.Webhook, error) {
	if meta == nil || meta.WebhookID == "" {
		return nil, nil
	}
	hook, err := c.channelWebhook(ctx, portalChannel)
	if err != nil {
		return nil, err
	}
	if hook.ID != meta.WebhookID {
		return nil, fmt.Errorf("discord: the webhook that sent the message (%s) is gone", meta.WebhookID)
	}
	return hook, nil
}
