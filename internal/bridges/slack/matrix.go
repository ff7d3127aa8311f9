package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	slackapi "github.com/slack-go/slack"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
)

// Errors reported to Matrix as message statuses (and a notice) when the
// bridge refuses a Matrix event.
var (
	errTextTooLong = bridgev2.WrapErrorInStatus(errors.New("message too long for Slack")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported)
	errUnknownReaction = bridgev2.WrapErrorInStatus(errors.New("Slack has no reaction for this emoji")).
				WithErrorAsMessage().WithIsCertain(true).WithSendNotice(false).WithErrorReason(event.MessageStatusUnsupported)
	errEmptyMessage = bridgev2.WrapErrorInStatus(errors.New("empty message")).
			WithErrorAsMessage().WithIsCertain(true).WithSendNotice(false).WithErrorReason(event.MessageStatusUnsupported)
)

// HandleMatrixMessage posts a Matrix message to Slack as the app's bot user
// under the sender's Matrix name: text with chat.postMessage, a file with
// Slack's upload flow. A thread or reply goes into the Slack thread.
func (sc *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	_, channelID, err := parsePortalID(msg.Portal.ID)
	if err != nil {
		return nil, err
	}
	threadTS, err := threadOf(msg)
	if err != nil {
		return nil, err
	}
	content := msg.Content
	var ts string
	switch content.MsgType {
	case event.MsgImage, event.MsgFile, event.MsgVideo, event.MsgAudio:
		ts, err = sc.sendFile(ctx, msg, channelID, threadTS)
	case event.MsgText, event.MsgNotice, event.MsgEmote:
		ts, err = sc.sendText(ctx, msg, channelID, threadTS)
	default:
		return nil, bridgev2.ErrUnsupportedMessageType
	}
	if err != nil {
		return nil, err
	}
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID:        messageID(sc.meta.TeamID, channelID, ts),
		SenderID:  sc.botGhostID(),
		Timestamp: parseTS(ts),
	}}, nil
}

// threadOf returns the Slack thread a Matrix message goes to: its thread's
// root, or for a plain reply the replied-to message's thread (or the
// message itself, which starts a thread).
func threadOf(msg *bridgev2.MatrixMessage) (string, error) {
	var root networkid.MessageID
	switch {
	case msg.ThreadRoot != nil:
		root = msg.ThreadRoot.ID
	case msg.ReplyTo != nil && msg.ReplyTo.ThreadRoot != "":
		root = msg.ReplyTo.ThreadRoot
	case msg.ReplyTo != nil:
		root = msg.ReplyTo.ID
	default:
		return "", nil
	}
	_, ts, err := parseMessageID(root)
	return ts, err
}

// senderName is the name a Matrix user's messages show on Slack.
func (sc *Client) senderName(ctx context.Context, msg *bridgev2.MatrixEventBase[*event.MessageEventContent]) string {
	if msg.OrigSender != nil && msg.OrigSender.DisambiguatedName != "" {
		return msg.OrigSender.DisambiguatedName
	}
	member, err := sc.connector.Bridge.Matrix.GetMemberInfo(ctx, msg.Portal.MXID, msg.Event.Sender)
	if err == nil && member != nil && member.Displayname != "" {
		return member.Displayname
	}
	return msg.Event.Sender.Localpart()
}

func (sc *Client) mrkdwnOf(content *event.MessageEventContent) string {
	formatted := ""
	if content.Format == event.FormatHTML {
		formatted = content.FormattedBody
	}
	return matrixToMrkdwn(content.Body, formatted, sc.slackIDOfMXID)
}

func (sc *Client) sendText(ctx context.Context, msg *bridgev2.MatrixMessage, channelID, threadTS string) (string, error) {
	text := sc.mrkdwnOf(msg.Content)
	if msg.Content.MsgType == event.MsgEmote {
		text = "_" + strings.TrimSpace(text) + "_"
	}
	if strings.TrimSpace(text) == "" {
		return "", errEmptyMessage
	}
	if len([]rune(text)) > maxSlackText {
		return "", errTextTooLong
	}
	opts := []slackapi.MsgOption{
		slackapi.MsgOptionText(text, false),
		slackapi.MsgOptionUsername(sc.senderName(ctx, &msg.MatrixEventBase)),
	}
	if threadTS != "" {
		opts = append(opts, slackapi.MsgOptionTS(threadTS))
	}
	type posted struct{ channel, ts string }
	p, err := callSlack(ctx, sc.limits, "chat.postMessage", channelID, func() (posted, error) {
		ch, ts, err := sc.api.PostMessageContext(ctx, channelID, opts...)
		return posted{ch, ts}, err
	})
	if err != nil {
		return "", slackError(err)
	}
	return p.ts, nil
}

// sendFile downloads a Matrix file (decrypting it in an encrypted room) and
// shares it in the Slack channel with its caption, then finds the ts of the
// message that carries it.
func (sc *Client) sendFile(ctx context.Context, msg *bridgev2.MatrixMessage, channelID, threadTS string) (string, error) {
	content := msg.Content
	if content.Info != nil && int64(content.Info.Size) > sc.connector.maxFileSize {
		return "", bridgev2.ErrMediaTooLarge
	}
	uri := content.URL
	if content.File != nil {
		uri = content.File.URL
	}
	data, err := sc.connector.Bridge.Bot.DownloadMedia(ctx, uri, content.File)
	if err != nil {
		return "", fmt.Errorf("%w: downloading the Matrix file: %w", bridgev2.ErrMediaDownloadFailed, err)
	}
	if int64(len(data)) > sc.connector.maxFileSize {
		return "", bridgev2.ErrMediaTooLarge
	}
	if len(data) == 0 {
		return "", errEmptyMessage
	}
	name := content.FileName
	caption := ""
	if name == "" {
		name = content.Body
	} else if content.Body != "" && content.Body != name {
		caption = sc.mrkdwnOf(content)
	}
	if name == "" {
		name = "file"
	}
	who := sc.senderName(ctx, &msg.MatrixEventBase)
	if caption == "" {
		caption = "*" + escapeSlack(who) + "* sent a file"
	} else {
		caption = "*" + escapeSlack(who) + "*: " + caption
	}
	if len([]rune(caption)) > maxSlackText {
		return "", errTextTooLong
	}
	params := slackapi.UploadFileParameters{
		Reader: strings.NewReader(string(data)), FileSize: len(data), Filename: name, Title: name,
		Channel: channelID, InitialComment: caption, ThreadTimestamp: threadTS,
	}
	summary, err := callSlack(ctx, sc.limits, "files.getUploadURLExternal", "", func() (*slackapi.FileSummary, error) {
		params.Reader = strings.NewReader(string(data))
		return sc.api.UploadFileContext(ctx, params)
	})
	if err != nil {
		return "", slackError(err)
	}
	return sc.sharedMessageTS(ctx, summary.ID, channelID)
}

// sharedMessageTS finds the ts of the message that shares a file in a
// channel (files.info's shares), which Slack fills in shortly after the
// upload completes.
func (sc *Client) sharedMessageTS(ctx context.Context, fileID, channelID string) (string, error) {
	for attempt := 0; attempt < 10; attempt++ {
		file, err := callSlack(ctx, sc.limits, "files.info", "", func() (*slackapi.File, error) {
			f, _, _, err := sc.api.GetFileInfoContext(ctx, fileID, 0, 0)
			return f, err
		})
		if err != nil {
			return "", slackError(err)
		}
		for _, shares := range []map[string][]slackapi.ShareFileInfo{file.Shares.Public, file.Shares.Private} {
			if s := shares[channelID]; len(s) > 0 {
				return s[len(s)-1].Ts, nil
			}
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("the uploaded file %s was not shared in %s", fileID, channelID)
}

// slackError turns Slack's answers that a retry cannot fix into message
// statuses saying so.
func slackError(err error) error {
	var resp slackapi.SlackErrorResponse
	if errors.As(err, &resp) {
		switch resp.Err {
		case "msg_too_long":
			return errTextTooLong
		case "not_in_channel", "channel_not_found", "is_archived", "restricted_action", "cant_update_message",
			"cant_delete_message", "message_not_found", "invalid_name", "file_too_large", "no_text":
			return bridgev2.WrapErrorInStatus(err).WithErrorAsMessage().WithIsCertain(true).WithSendNotice(true)
		}
	}
	return err
}

// HandleMatrixEdit updates the Slack message's text (chat.update).
func (sc *Client) HandleMatrixEdit(ctx context.Context, msg *bridgev2.MatrixEdit) error {
	if msg.EditTarget.PartID != "" {
		return bridgev2.WrapErrorInStatus(errors.New("editing a file's caption is not supported on Slack")).
			WithErrorAsMessage().WithIsCertain(true).WithErrorReason(event.MessageStatusUnsupported)
	}
	channelID, ts, err := parseMessageID(msg.EditTarget.ID)
	if err != nil {
		return err
	}
	text := sc.mrkdwnOf(msg.Content)
	if strings.TrimSpace(text) == "" {
		return errEmptyMessage
	}
	if len([]rune(text)) > maxSlackText {
		return errTextTooLong
	}
	_, err = callSlack(ctx, sc.limits, "chat.update", "", func() (string, error) {
		_, _, _, err := sc.api.UpdateMessageContext(ctx, channelID, ts, slackapi.MsgOptionText(text, false))
		return "", err
	})
	return slackError(err)
}

// HandleMatrixMessageRemove deletes the Slack message (chat.delete).
func (sc *Client) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) error {
	channelID, ts, err := parseMessageID(msg.TargetMessage.ID)
	if err != nil {
		return err
	}
	_, err = callSlack(ctx, sc.limits, "chat.delete", "", func() (string, error) {
		_, _, err := sc.api.DeleteMessageContext(ctx, channelID, ts)
		return "", err
	})
	var resp slackapi.SlackErrorResponse
	if errors.As(err, &resp) && resp.Err == "message_not_found" {
		return nil // already gone
	}
	return slackError(err)
}

// PreHandleMatrixReaction maps the Matrix emoji to a Slack reaction name.
// Every Matrix reaction is the app's bot user's on Slack, which can react
// with each emoji once per message.
func (sc *Client) PreHandleMatrixReaction(_ context.Context, msg *bridgev2.MatrixReaction) (bridgev2.MatrixReactionPreResponse, error) {
	name, ok := slackNameForEmoji(msg.Content.RelatesTo.Key)
	if !ok {
		return bridgev2.MatrixReactionPreResponse{}, errUnknownReaction
	}
	return bridgev2.MatrixReactionPreResponse{
		SenderID: sc.botGhostID(),
		EmojiID:  networkid.EmojiID(name),
		Emoji:    emojiForSlack(name),
	}, nil
}

// HandleMatrixReaction adds the reaction on Slack (reactions.add).
func (sc *Client) HandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (*database.Reaction, error) {
	channelID, ts, err := parseMessageID(msg.TargetMessage.ID)
	if err != nil {
		return nil, err
	}
	name := string(msg.PreHandleResp.EmojiID)
	_, err = callSlack(ctx, sc.limits, "reactions.add", "", func() (string, error) {
		return "", sc.api.AddReactionContext(ctx, name, slackapi.NewRefToMessage(channelID, ts))
	})
	var resp slackapi.SlackErrorResponse
	if errors.As(err, &resp) && resp.Err == "already_reacted" {
		err = nil
	}
	if err != nil {
		return nil, slackError(err)
	}
	return &database.Reaction{}, nil
}

// HandleMatrixReactionRemove removes the reaction on Slack.
func (sc *Client) HandleMatrixReactionRemove(ctx context.Context, msg *bridgev2.MatrixReactionRemove) error {
	channelID, ts, err := parseMessageID(msg.TargetReaction.MessageID)
	if err != nil {
		return err
	}
	name := string(msg.TargetReaction.EmojiID)
	_, err = callSlack(ctx, sc.limits, "reactions.remove", "", func() (string, error) {
		return "", sc.api.RemoveReactionContext(ctx, name, slackapi.NewRefToMessage(channelID, ts))
	})
	var resp slackapi.SlackErrorResponse
	if errors.As(err, &resp) && resp.Err == "no_reaction" {
		zerolog.Ctx(ctx).Debug().Msg("Slack reaction was already gone")
		return nil
	}
	return slackError(err)
}
