package discord

import (
	"context"
	"fmt"
	"time"

	"github.com/bwmarrin/discordgo"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"
)

// This file bridges typing both ways. Discord shows a typing indicator for
// 10 seconds after POST /channels/{id}/typing, or until the typer's message
// arrives; it has no "stopped typing".

const (
	// discordTypingTimeout is how long Discord's indicator lasts.
	discordTypingTimeout = 10 * time.Second
	// typingRepeat is how often bridgev2 repeats a Matrix user's typing,
	// within the indicator's life.
	typingRepeat = 8 * time.Second
)

var _ bridgev2.TypingHandlingNetworkAPI = (*Client)(nil)

// HandleMatrixTyping shows the login typing in the portal's channel while
// its Matrix user types text.
func (c *Client) HandleMatrixTyping(ctx context.Context, msg *bridgev2.MatrixTyping) error {
	if !msg.IsTyping || msg.Type != bridgev2.TypingTypeText {
		return nil
	}
	if err := c.session.ChannelTyping(string(msg.Portal.ID), discordgo.WithContext(ctx)); err != nil {
		return fmt.Errorf("discord: typing in %s: %w", msg.Portal.ID, err)
	}
	return nil
}

// onTypingStart shows a Discord user's typing on their ghost for as long as
// Discord's indicator lasts.
func (c *Client) onTypingStart(s *discordgo.Session, t *discordgo.TypingStart) {
	if t.UserID == c.selfID {
		return
	}
	ctx := c.eventContext()
	portalChannel, _, ok := c.portalFor(ctx, t.ChannelID)
	if !ok {
		return
	}
	c.login.QueueRemoteEvent(&simplevent.Typing{
		EventMeta: simplevent.EventMeta{
			Type:       bridgev2.RemoteEventTyping,
			PortalKey:  c.portalKey(portalChannel),
			Sender:     c.sender(t.UserID),
			Timestamp:  time.Unix(int64(t.Timestamp), 0),
			LogContext: channelLogContext(t.ChannelID),
		},
		Timeout: discordTypingTimeout,
		Type:    bridgev2.TypingTypeText,
	})
}
