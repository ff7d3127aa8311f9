package telegram

import (
	"context"
	"fmt"
	"time"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"
)

// Read receipts and typing, both ways: a Matrix read receipt marks the
// chat read on Telegram up to its message (messages.readHistory, or
// channels.readHistory), and Matrix typing is the account's typing
// (messages.setTyping); Telegram's "read" of the account's messages in a
// private chat (updateReadHistoryOutbox) is a receipt from the other
// user's ghost, and a user's typing (updateUserTyping, updateChatUserTyping,
// updateChannelUserTyping) their ghost's.

var (
	_ bridgev2.ReadReceiptHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.TypingHandlingNetworkAPI      = (*Client)(nil)
)

// typingTimeout is how long Telegram shows a typing action without a
// repeat (its clients repeat it every 5 seconds).
const typingTimeout = 6 * time.Second

// HandleMatrixReadReceipt marks the chat read on Telegram up to the
// message the receipt names (or the latest one bridged before its time).
func (tc *Client) HandleMatrixReadReceipt(ctx context.Context, receipt *bridgev2.MatrixReadReceipt) error {
	target := receipt.ExactMessage
	if target == nil {
		var err error
		target, err = tc.connector.Bridge.DB.Message.GetLastPartAtOrBeforeTime(ctx, receipt.Portal.PortalKey, receipt.ReadUpTo)
		if err != nil {
			return fmt.Errorf("finding the message read: %w", err)
		}
		if target == nil {
			return nil
		}
	}
	maxID, err := telegramMessageID(target)
	if err != nil {
		return err
	}
	peer, err := tc.peer(ctx, receipt.Portal)
	if err != nil {
		return err
	}
	api, err := tc.client()
	if err != nil {
		return err
	}
	if channel, ok := peer.(*tg.InputPeerChannel); ok {
		_, err := withFloodWait(ctx, func() (bool, error) {
			return api.ChannelsReadHistory(ctx, &tg.ChannelsReadHistoryRequest{
				Channel: &tg.InputChannel{ChannelID: channel.ChannelID, AccessHash: channel.AccessHash}, MaxID: maxID,
			})
		})
		if err != nil {
			return fmt.Errorf("channels.readHistory: %w", err)
		}
		return nil
	}
	affected, err := withFloodWait(ctx, func() (*tg.MessagesAffectedMessages, error) {
		return api.MessagesReadHistory(ctx, &tg.MessagesReadHistoryRequest{Peer: peer, MaxID: maxID})
	})
	if err != nil {
		return fmt.Errorf("messages.readHistory: %w", err)
	}
	// The answer moves the account's pts: hand the updates manager the
	// update it stands for, so that it sees no gap.
	if read, ok := peerOf(peer); ok {
		tc.handleOwnUpdate(ctx, &tg.UpdateReadHistoryInbox{Peer: read, MaxID: maxID, Pts: affected.Pts, PtsCount: affected.PtsCount})
	}
	return nil
}

// peerOf is the peer an input peer names.
func peerOf(in tg.InputPeerClass) (tg.PeerClass, bool) {
	switch in := in.(type) {
	case *tg.InputPeerUser:
		return &tg.PeerUser{UserID: in.UserID}, true
	case *tg.InputPeerChat:
		return &tg.PeerChat{ChatID: in.ChatID}, true
	case *tg.InputPeerChannel:
		return &tg.PeerChannel{ChannelID: in.ChannelID}, true
	}
	return nil, false
}

// HandleMatrixTyping sets the account typing in the chat, or stops it.
func (tc *Client) HandleMatrixTyping(ctx context.Context, typing *bridgev2.MatrixTyping) error {
	peer, err := tc.peer(ctx, typing.Portal)
	if err != nil {
		return err
	}
	api, err := tc.client()
	if err != nil {
		return err
	}
	var action tg.SendMessageActionClass = &tg.SendMessageCancelAction{}
	if typing.IsTyping {
		action = &tg.SendMessageTypingAction{}
	}
	if _, err := api.MessagesSetTyping(ctx, &tg.MessagesSetTypingRequest{Peer: peer, Action: action}); err != nil {
		return fmt.Errorf("messages.setTyping: %w", err)
	}
	return nil
}

// onReceiptsAndTyping hands Telegram's read receipts and typing of others
// to bridgev2.
func (tc *Client) onReceiptsAndTyping(d tg.UpdateDispatcher) {
	d.OnReadHistoryOutbox(func(_ context.Context, _ tg.Entities, u *tg.UpdateReadHistoryOutbox) error {
		user, ok := u.Peer.(*tg.PeerUser)
		if !ok {
			return nil // a group's says nothing of who read
		}
		return tc.queueReceipt(u.Peer, user.UserID, u.MaxID)
	})
	d.OnUserTyping(func(_ context.Context, _ tg.Entities, u *tg.UpdateUserTyping) error {
		return tc.queueTyping(&tg.PeerUser{UserID: u.UserID}, u.UserID, u.Action)
	})
	d.OnChatUserTyping(func(_ context.Context, _ tg.Entities, u *tg.UpdateChatUserTyping) error {
		if from, ok := u.FromID.(*tg.PeerUser); ok {
			return tc.queueTyping(&tg.PeerChat{ChatID: u.ChatID}, from.UserID, u.Action)
		}
		return nil
	})
	d.OnChannelUserTyping(func(_ context.Context, _ tg.Entities, u *tg.UpdateChannelUserTyping) error {
		if from, ok := u.FromID.(*tg.PeerUser); ok {
			return tc.queueTyping(&tg.PeerChannel{ChannelID: u.ChannelID}, from.UserID, u.Action)
		}
		return nil
	})
}

// ephemeral logs a receipt or typing bridgev2 failed to bridge: unlike a
// message, it is not worth holding the updates after it back for.
func (tc *Client) ephemeral(what string, res bridgev2.EventHandlingResult) error {
	if err := handled(what, res); err != nil {
		tc.login.Log.Warn().Err(err).Msg("Bridging a Telegram " + what + " failed")
	}
	return nil
}

// queueReceipt hands bridgev2 a user's read receipt for the chat's
// messages up to maxID.
func (tc *Client) queueReceipt(chat tg.PeerClass, user int64, maxID int) error {
	key, ok := tc.portalKey(chat)
	if !ok {
		return nil
	}
	return tc.ephemeral("read receipt", tc.login.QueueRemoteEvent(&simplevent.Receipt{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventReadReceipt,
			PortalKey: key,
			Sender:    bridgev2.EventSender{Sender: ghostID(user), SenderLogin: tc.login.ID},
			Timestamp: time.Now(),
		},
		LastTarget: messageID(chat, maxID),
	}))
}

// queueTyping hands bridgev2 a user's typing in a chat: typing for
// Telegram's timeout, or stopped (a cancel action); other actions (a
// recording, an upload) are shown as typing too.
func (tc *Client) queueTyping(chat tg.PeerClass, user int64, action tg.SendMessageActionClass) error {
	if user == tc.selfID() {
		return nil
	}
	key, ok := tc.portalKey(chat)
	if !ok {
		return nil
	}
	timeout := typingTimeout
	if _, cancel := action.(*tg.SendMessageCancelAction); cancel {
		timeout = 0
	}
	return tc.ephemeral("typing", tc.login.QueueRemoteEvent(&simplevent.Typing{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventTyping,
			PortalKey: key,
			Sender:    bridgev2.EventSender{Sender: ghostID(user), SenderLogin: tc.login.ID},
			Timestamp: time.Now(),
		},
		Timeout: timeout,
	}))
}
