package telegram

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"go.mau.fi/util/variationselector"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// randomID is the random_id of the Telegram request that bridges a Matrix
// event: the first 8 bytes of the SHA-256 of its event ID, so that an event
// delivered again (after a crash before its send was recorded) is a repeat
// Telegram drops rather than a second message.
func randomID(evt id.EventID) int64 {
	sum := sha256.Sum256([]byte(evt))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

var (
	_ bridgev2.EditHandlingNetworkAPI      = (*Client)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI = (*Client)(nil)
	_ bridgev2.ReactionHandlingNetworkAPI  = (*Client)(nil)
)

// client is the running gotd client's API.
func (tc *Client) client() (*tg.Client, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.api == nil || !tc.running {
		return nil, errors.New("not connected to Telegram")
	}
	return tc.api.API(), nil
}

// telegramMessageID is the Telegram ID of a bridged message (in its
// channel, for a channel's; see messageIDIn).
func telegramMessageID(msg *database.Message) (int, error) {
	raw := string(msg.ID)
	if i := strings.LastIndexByte(raw, '.'); i >= 0 {
		raw = raw[i+1:]
	}
	id, err := strconv.Atoi(raw)
	if err != nil {
		return 0, fmt.Errorf("message ID %q: %w", msg.ID, err)
	}
	return id, nil
}

// maxMessageLength is the most characters Telegram takes in a message.
const maxMessageLength = 4096

var (
	errTextTooLong = bridgev2.WrapErrorInStatus(fmt.Errorf("message too long for Telegram (at most %d characters)", maxMessageLength)).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported)
	errEmptyMessage = bridgev2.WrapErrorInStatus(errors.New("empty message")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(false).WithErrorReason(event.MessageStatusUnsupported)
)

// refused is a Telegram error the user should see as a notice: the
// message was not bridged, and retrying will not change that.
func refused(what string, err error) error {
	if _, ok := tgerr.As(err); !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	return bridgev2.WrapErrorInStatus(fmt.Errorf("Telegram refused the %s: %w", what, err)).
		WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusGenericError)
}

// HandleMatrixMessage sends a Matrix message to the private chat.
func (tc *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	switch msg.Content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	case event.MsgFile, event.MsgImage, event.MsgVideo, event.MsgAudio, event.CapMsgSticker:
		peer, err := tc.peer(ctx, msg.Portal)
		if err != nil {
			return nil, err
		}
		api, err := tc.client()
		if err != nil {
			return nil, err
		}
		return tc.sendFile(ctx, api, peer, msg)
	default:
		return nil, bridgev2.ErrUnsupportedMessageType
	}
	switch n := utf8.RuneCountInString(msg.Content.Body); {
	case n > maxMessageLength:
		return nil, errTextTooLong
	case strings.TrimSpace(msg.Content.Body) == "":
		return nil, errEmptyMessage
	}
	peer, err := tc.peer(ctx, msg.Portal)
	if err != nil {
		return nil, err
	}
	api, err := tc.client()
	if err != nil {
		return nil, err
	}
	req := &tg.MessagesSendMessageRequest{Peer: peer, Message: msg.Content.Body, RandomID: randomID(msg.Event.ID)}
	if msg.ReplyTo != nil {
		if replyTo, err := telegramMessageID(msg.ReplyTo); err == nil {
			req.SetReplyTo(&tg.InputReplyToMessage{ReplyToMsgID: replyTo})
		}
	}
	result, err := withFloodWait(ctx, func() (tg.UpdatesClass, error) { return api.MessagesSendMessage(ctx, req) })
	if err != nil {
		return nil, refused("message", err)
	}
	sentID, date, err := sentMessage(result, req.RandomID)
	if err != nil {
		return nil, fmt.Errorf("messages.sendMessage: %w", err)
	}
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID:        messageIDIn(inputChannelID(peer), sentID),
		SenderID:  ghostID(tc.selfID()),
		Timestamp: time.Unix(int64(date), 0),
	}}, nil
}

// HandleMatrixEdit edits the message on Telegram.
func (tc *Client) HandleMatrixEdit(ctx context.Context, edit *bridgev2.MatrixEdit) error {
	peer, err := tc.peer(ctx, edit.Portal)
	if err != nil {
		return err
	}
	id, err := telegramMessageID(edit.EditTarget)
	if err != nil {
		return err
	}
	if utf8.RuneCountInString(edit.Content.Body) > maxMessageLength {
		return errTextTooLong
	}
	api, err := tc.client()
	if err != nil {
		return err
	}
	_, err = withFloodWait(ctx, func() (tg.UpdatesClass, error) {
		return api.MessagesEditMessage(ctx, &tg.MessagesEditMessageRequest{Peer: peer, ID: id, Message: edit.Content.Body})
	})
	if err != nil {
		return refused("edit", err)
	}
	return nil
}

// HandleMatrixMessageRemove deletes the message for both sides (for
// everyone, in a channel).
func (tc *Client) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) error {
	id, err := telegramMessageID(msg.TargetMessage)
	if err != nil {
		return err
	}
	api, err := tc.client()
	if err != nil {
		return err
	}
	if isChannelPortal(msg.Portal) {
		return tc.deleteInChannel(ctx, api, msg.Portal, id)
	}
	affected, err := withFloodWait(ctx, func() (*tg.MessagesAffectedMessages, error) {
		return api.MessagesDeleteMessages(ctx, &tg.MessagesDeleteMessagesRequest{Revoke: true, ID: []int{id}})
	})
	if err != nil {
		return refused("delete", err)
	}
	// The answer moves the account's pts: hand it to the updates manager as
	// the update it stands for, so that it sees no gap.
	tc.handleOwnUpdate(ctx, &tg.UpdateDeleteMessages{Messages: []int{id}, Pts: affected.Pts, PtsCount: affected.PtsCount})
	return nil
}

// PreHandleMatrixReaction: one reaction per user and message, as in a
// Telegram private chat without Premium, an emoji as Telegram writes it
// (without variation selectors).
func (tc *Client) PreHandleMatrixReaction(_ context.Context, msg *bridgev2.MatrixReaction) (bridgev2.MatrixReactionPreResponse, error) {
	return bridgev2.MatrixReactionPreResponse{
		SenderID: ghostID(tc.selfID()),
		Emoji:    variationselector.Remove(msg.Content.RelatesTo.Key),
	}, nil
}

// HandleMatrixReaction sets the account's reaction to the message.
func (tc *Client) HandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (*database.Reaction, error) {
	if err := tc.sendReaction(ctx, msg.Portal, msg.TargetMessage, msg.PreHandleResp.Emoji); err != nil {
		return nil, err
	}
	return &database.Reaction{}, nil
}

// HandleMatrixReactionRemove takes the account's reaction back.
func (tc *Client) HandleMatrixReactionRemove(ctx context.Context, msg *bridgev2.MatrixReactionRemove) error {
	target, err := tc.connector.Bridge.DB.Message.GetFirstPartByID(ctx, tc.login.ID, msg.TargetReaction.MessageID)
	if err != nil {
		return fmt.Errorf("finding the reaction's message: %w", err)
	}
	if target == nil {
		return nil
	}
	return tc.sendReaction(ctx, msg.Portal, target, "")
}

func (tc *Client) sendReaction(ctx context.Context, portal *bridgev2.Portal, target *database.Message, emoji string) error {
	peer, err := tc.peer(ctx, portal)
	if err != nil {
		return err
	}
	id, err := telegramMessageID(target)
	if err != nil {
		return err
	}
	api, err := tc.client()
	if err != nil {
		return err
	}
	req := &tg.MessagesSendReactionRequest{Peer: peer, MsgID: id}
	if emoji != "" {
		req.SetReaction([]tg.ReactionClass{&tg.ReactionEmoji{Emoticon: emoji}})
	}
	if _, err := withFloodWait(ctx, func() (tg.UpdatesClass, error) { return api.MessagesSendReaction(ctx, req) }); err != nil {
		return refused("reaction", err)
	}
	return nil
}

// maxFloodWait bounds how long a call waits out Telegram's FLOOD_WAIT.
const maxFloodWait = time.Minute

// withFloodWait calls f, and once more after the wait a FLOOD_WAIT_X
// names (up to maxFloodWait; a longer one is returned as the error).
func withFloodWait[T any](ctx context.Context, f func() (T, error)) (T, error) {
	result, err := f()
	wait, flooded := tgerr.AsFloodWait(err)
	if !flooded || wait > maxFloodWait {
		return result, err
	}
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return result, ctx.Err()
	}
	return f()
}
