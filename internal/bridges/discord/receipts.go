package discord

import (
	"context"
	"fmt"
	"net/http"

	"github.com/bwmarrin/discordgo"
	"maunium.net/go/mautrix/bridgev2"
)

// This file bridges read receipts from Matrix for a user login: Discord
// keeps a read state for user accounts (POST .../messages/{id}/ack), not
// for bots, and tells no one of others' reads, so nothing comes the other
// way but the user's own MESSAGE_ACK from their other clients, which would
// need double puppeting in Matrix and is not bridged.

var _ bridgev2.ReadReceiptHandlingNetworkAPI = (*Client)(nil)

// HandleMatrixReadReceipt marks the channel read up to the message on
// Discord, for a user login.
func (c *Client) HandleMatrixReadReceipt(ctx context.Context, msg *bridgev2.MatrixReadReceipt) error {
	if !c.userToken || msg.ExactMessage == nil {
		return nil
	}
	channelID := messageChannel(msg.ExactMessage, string(msg.Portal.ID))
	uri := discordgo.EndpointChannelMessage(channelID, string(msg.ExactMessage.ID)) + "/ack"
	bucket := discordgo.EndpointChannelMessage(channelID, "") + "/ack"
	body := map[string]any{"token": nil}
	if _, err := c.session.RequestWithBucketID(http.MethodPost, uri, body, bucket, discordgo.WithContext(ctx)); err != nil {
		return fmt.Errorf("discord: mark %s read in %s: %w", msg.ExactMessage.ID, channelID, err)
	}
	return nil
}
