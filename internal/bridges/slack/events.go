package slack

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	slackapi "github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
)

// maxIncomingText bounds the text of a Slack message bridged to Matrix
// (Slack itself caps messages at 40,000 characters); a longer one is
// replaced by a notice saying so.
const maxIncomingText = 4 * maxSlackText

// envelopeAck acknowledges one Socket Mode envelope, once.
type envelopeAck struct {
	once sync.Once
	sm   *socketmode.Client
	id   string
}

// ack acknowledges the envelope; a nil envelopeAck (an event fetched, not
// delivered) has nothing to acknowledge.
func (a *envelopeAck) ack(ctx context.Context) {
	if a == nil {
		return
	}
	a.once.Do(func() {
		if err := a.sm.AckCtx(ctx, a.id, nil); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("envelope_id", a.id).Msg("Failed to ack a Slack envelope")
		}
	})
}

func envelopeIDOf(raw json.RawMessage) string {
	var env struct {
		EnvelopeID string `json:"envelope_id"`
	}
	_ = json.Unmarshal(raw, &env)
	return env.EnvelopeID
}

func (sc *Client) handleEventsAPI(ctx context.Context, sm *socketmode.Client, evt socketmode.Event) {
	if evt.Request == nil {
		return
	}
	ack := &envelopeAck{sm: sm, id: evt.Request.EnvelopeID}
	log := zerolog.Ctx(ctx).With().Str("envelope_id", ack.id).Int("retry_attempt", evt.Request.RetryAttempt).Logger()
	ctx = log.WithContext(ctx)
	apiEvent, ok := evt.Data.(slackevents.EventsAPIEvent)
	if !ok || apiEvent.Type != slackevents.CallbackEvent {
		ack.ack(ctx)
		return
	}
	if apiEvent.TeamID != sc.meta.TeamID {
		log.Warn().Str("team_id", apiEvent.TeamID).Msg("Dropping a Slack event from another workspace")
		ack.ack(ctx)
		return
	}
	switch data := apiEvent.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		sc.handleMessageEvent(ctx, data, ack)
	case *slackevents.ReactionAddedEvent:
		sc.handleReactionEvent(ctx, (*reactionEvent)(data), true, ack)
	case *slackevents.ReactionRemovedEvent:
		sc.handleReactionEvent(ctx, (*reactionEvent)(data), false, ack)
	case *slackevents.MemberJoinedChannelEvent:
		sc.queueChatResync(ctx, data.Channel)
		ack.ack(ctx)
	case *slackevents.MemberLeftChannelEvent:
		sc.queueChatResync(ctx, data.Channel)
		ack.ack(ctx)
	case *slackevents.ChannelRenameEvent:
		sc.queueChatResync(ctx, data.Channel.ID)
		ack.ack(ctx)
	default:
		log.Debug().Str("inner_type", apiEvent.InnerEvent.Type).Msg("Ignoring a Slack event the bridge does not handle")
		ack.ack(ctx)
	}
}

// reactionEvent is the shape reaction_added and reaction_removed share.
type reactionEvent struct {
	Type           string           `json:"type"`
	User           string           `json:"user"`
	Reaction       string           `json:"reaction"`
	ItemUser       string           `json:"item_user"`
	Item           slackevents.Item `json:"item"`
	EventTimestamp string           `json:"event_ts"`
}

// queue hands a remote event to bridgev2 and acks its envelope once the
// event is handled: landed (nil meaning always) says whether the Matrix side
// has it. An event that fails stays unacknowledged, so Slack delivers it
// again after a reconnect or restart.
func (sc *Client) queue(ctx context.Context, meta *simplevent.EventMeta, evt bridgev2.RemoteEvent, ack *envelopeAck, landed func(context.Context, *bridgev2.Portal) bool) {
	meta.PostHandleFunc = func(ctx context.Context, portal *bridgev2.Portal) {
		if landed == nil || landed(ctx, portal) {
			ack.ack(ctx)
		} else {
			zerolog.Ctx(ctx).Warn().Msg("Slack event not bridged; leaving it unacknowledged for redelivery")
		}
	}
	res := sc.connector.Bridge.QueueRemoteEvent(sc.login, evt)
	switch {
	case res.Queued:
		// PostHandle acks once the portal's queue gets to it.
	case res.Success || res.Ignored:
		ack.ack(ctx)
	default:
		zerolog.Ctx(ctx).Err(res.Error).Msg("Failed to bridge a Slack event; leaving it unacknowledged for redelivery")
	}
}

func (sc *Client) messageLanded(id networkid.MessageID) func(context.Context, *bridgev2.Portal) bool {
	return func(ctx context.Context, portal *bridgev2.Portal) bool {
		msg, err := portal.Bridge.DB.Message.GetFirstPartByID(ctx, portal.Receiver, id)
		return err == nil && msg != nil
	}
}

func (sc *Client) eventMeta(channelID string, typ bridgev2.RemoteEventType, sender bridgev2.EventSender, ts string) simplevent.EventMeta {
	return simplevent.EventMeta{
		Type:      typ,
		PortalKey: portalKey(sc.meta.TeamID, channelID),
		Sender:    sender,
		Timestamp: parseTS(ts),
		LogContext: func(c zerolog.Context) zerolog.Context {
			return c.Str("slack_channel", channelID).Str("slack_ts", ts)
		},
	}
}

func (sc *Client) handleMessageEvent(ctx context.Context, m *slackevents.MessageEvent, ack *envelopeAck) {
	log := zerolog.Ctx(ctx)
	switch m.SubType {
	case "", "file_share", "thread_broadcast", "me_message", "bot_message":
		msg := m.Message
		if msg == nil || msg.Timestamp == "" || m.Channel == "" {
			log.Warn().Msg("Dropping a malformed Slack message event")
			ack.ack(ctx)
			return
		}
		sc.queueMessage(ctx, m.Channel, msg, ack)
	case "message_changed":
		msg := m.Message
		if msg == nil || msg.Timestamp == "" || m.Channel == "" {
			log.Warn().Msg("Dropping a malformed Slack message_changed event")
			ack.ack(ctx)
			return
		}
		unchanged := m.PreviousMessage != nil && m.PreviousMessage.Text == msg.Text
		if sc.isOwn(msg.User, msg.BotID) || unchanged {
			// Our own edit's echo, or an unfurl that left the text alone.
			ack.ack(ctx)
			return
		}
		msg.Channel = m.Channel
		evt := &simplevent.Message[*slackapi.Msg]{
			EventMeta:       sc.eventMeta(m.Channel, bridgev2.RemoteEventEdit, sc.sender(msg.User, msg.BotID), m.TimeStamp),
			TargetMessage:   messageID(sc.meta.TeamID, m.Channel, msg.Timestamp),
			Data:            msg,
			ConvertEditFunc: sc.convertEdit,
		}
		sc.queue(ctx, &evt.EventMeta, evt, ack, nil)
	case "message_deleted":
		if m.DeletedTimeStamp == "" || m.Channel == "" {
			log.Warn().Msg("Dropping a malformed Slack message_deleted event")
			ack.ack(ctx)
			return
		}
		var sender bridgev2.EventSender
		if prev := m.PreviousMessage; prev != nil {
			sender = sc.sender(prev.User, prev.BotID)
		}
		evt := &simplevent.MessageRemove{
			EventMeta:     sc.eventMeta(m.Channel, bridgev2.RemoteEventMessageRemove, sender, m.TimeStamp),
			TargetMessage: messageID(sc.meta.TeamID, m.Channel, m.DeletedTimeStamp),
		}
		sc.queue(ctx, &evt.EventMeta, evt, ack, nil)
	default:
		log.Debug().Str("subtype", m.SubType).Msg("Ignoring a Slack message subtype the bridge does not handle")
		ack.ack(ctx)
	}
}

// queueMessage bridges a new Slack message (not our own echo).
func (sc *Client) queueMessage(ctx context.Context, channelID string, msg *slackapi.Msg, ack *envelopeAck) {
	if sc.isOwn(msg.User, msg.BotID) {
		ack.ack(ctx)
		return
	}
	msg.Channel = channelID
	id := messageID(sc.meta.TeamID, channelID, msg.Timestamp)
	evt := &simplevent.Message[*slackapi.Msg]{
		EventMeta:          sc.eventMeta(channelID, bridgev2.RemoteEventMessage, sc.sender(msg.User, msg.BotID), msg.Timestamp),
		ID:                 id,
		Data:               msg,
		ConvertMessageFunc: sc.convertMessage,
	}
	evt.CreatePortal = true
	sc.queue(ctx, &evt.EventMeta, evt, ack, sc.messageLanded(id))
}

// maxCatchUp bounds the messages fetched per channel when the bridge
// reconnects.
const maxCatchUp = 500

// catchUp bridges the top-level messages of a portal's channel posted after
// the last top-level one received from Slack: Slack retries an
// unacknowledged event only for a while, so after a long stop or a dropped
// connection the history is the only source. Messages the envelopes bring
// as well are bridged once (bridgev2 knows their IDs). Thread replies and
// edits made meanwhile are not fetched.
func (sc *Client) catchUp(ctx context.Context, channelID string) {
	log := zerolog.Ctx(ctx).With().Str("slack_channel", channelID).Logger()
	portal, err := sc.connector.Bridge.GetExistingPortalByKey(ctx, portalKey(sc.meta.TeamID, channelID))
	if err != nil || portal == nil || !portal.RoomCreated.IsSet() { // not MXID, which its room's creation writes unguarded
		return
	}
	oldest, err := sc.lastReceivedTS(ctx, portal.PortalKey)
	if err != nil {
		log.Err(err).Msg("Failed to find where to catch up from")
		return
	}
	if oldest == "" {
		return
	}
	var msgs []slackapi.Message
	cursor := ""
	for len(msgs) < maxCatchUp {
		params := &slackapi.GetConversationHistoryParameters{ChannelID: channelID, Oldest: oldest, Cursor: cursor, Limit: 200}
		resp, err := callSlack(ctx, sc.limits, "conversations.history", "", func() (*slackapi.GetConversationHistoryResponse, error) {
			return sc.api.GetConversationHistoryContext(ctx, params)
		})
		if err != nil {
			log.Err(err).Msg("Failed to fetch the messages missed while disconnected")
			return
		}
		msgs = append(msgs, resp.Messages...)
		if !resp.HasMore || resp.ResponseMetaData.NextCursor == "" {
			break
		}
		cursor = resp.ResponseMetaData.NextCursor
	}
	slices.SortFunc(msgs, func(a, b slackapi.Message) int {
		return cmp.Compare(parseTS(a.Timestamp).UnixMicro(), parseTS(b.Timestamp).UnixMicro())
	})
	if len(msgs) > 0 {
		log.Info().Int("count", len(msgs)).Msg("Catching up on Slack messages posted while disconnected")
	}
	for i := range msgs {
		msg := &msgs[i].Msg
		switch msg.SubType {
		case "", "file_share", "thread_broadcast", "me_message", "bot_message":
			sc.queueMessage(ctx, channelID, msg, nil)
		}
	}
}

// lastReceivedTSQuery finds a portal's newest top-level message that came
// from Slack: messages sent from Matrix (posted as the app's bot user) and
// thread replies are newer than top-level Slack messages missed meanwhile,
// so they cannot mark where the channel's history was last read.
const lastReceivedTSQuery = `
	SELECT id FROM message
	WHERE bridge_id=$1 AND room_id=$2 AND room_receiver=$3 AND sender_id<>$4 AND thread_root_id IS NULL
	ORDER BY timestamp DESC, id DESC LIMIT 1
`

// lastReceivedTS returns the ts of the portal's newest top-level message
// received from Slack, or "" if it has none.
func (sc *Client) lastReceivedTS(ctx context.Context, portal networkid.PortalKey) (string, error) {
	db := sc.connector.Bridge.DB
	var msgID networkid.MessageID
	err := db.QueryRow(ctx, lastReceivedTSQuery, db.BridgeID, portal.ID, portal.Receiver, sc.botGhostID()).Scan(&msgID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("finding the last message received in %s: %w", portal.ID, err)
	}
	_, ts, err := parseMessageID(msgID)
	return ts, err
}

func (sc *Client) handleReactionEvent(ctx context.Context, r *reactionEvent, added bool, ack *envelopeAck) {
	if r.Item.Type != "message" || r.Item.Channel == "" || r.Item.Timestamp == "" || r.Reaction == "" {
		ack.ack(ctx)
		return
	}
	if sc.isOwn(r.User, "") {
		ack.ack(ctx)
		return
	}
	typ := bridgev2.RemoteEventReaction
	if !added {
		typ = bridgev2.RemoteEventReactionRemove
	}
	name, _, _ := strings.Cut(r.Reaction, "::")
	evt := &simplevent.Reaction{
		EventMeta:     sc.eventMeta(r.Item.Channel, typ, sc.sender(r.User, ""), r.EventTimestamp),
		TargetMessage: messageID(sc.meta.TeamID, r.Item.Channel, r.Item.Timestamp),
		EmojiID:       networkid.EmojiID(name),
		Emoji:         emojiForSlack(name),
	}
	sc.queue(ctx, &evt.EventMeta, evt, ack, nil)
}

// convertMessage turns a Slack message into Matrix parts: one per file
// (part ID "file-<id>"), then the text (part ID "").
func (sc *Client) convertMessage(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, msg *slackapi.Msg) (*bridgev2.ConvertedMessage, error) {
	cm := &bridgev2.ConvertedMessage{}
	if msg.ThreadTimestamp != "" && msg.ThreadTimestamp != msg.Timestamp {
		root := messageID(sc.meta.TeamID, msg.Channel, msg.ThreadTimestamp)
		cm.ThreadRoot = &root
	}
	for i := range msg.Files {
		part, err := sc.convertFile(ctx, portal, intent, &msg.Files[i])
		if err != nil {
			return nil, err
		}
		cm.Parts = append(cm.Parts, part)
	}
	if msg.Text != "" || len(cm.Parts) == 0 {
		msgType := event.MsgText
		if msg.SubType == "me_message" {
			msgType = event.MsgEmote
		}
		cm.Parts = append(cm.Parts, &bridgev2.ConvertedMessagePart{
			Type:    event.EventMessage,
			Content: sc.convertText(ctx, msg.Text, msgType),
		})
	}
	return cm, nil
}

// convertText converts mrkdwn to a Matrix message content.
func (sc *Client) convertText(ctx context.Context, text string, msgType event.MessageType) *event.MessageEventContent {
	if len(text) > maxIncomingText {
		zerolog.Ctx(ctx).Warn().Int("length", len(text)).Msg("Slack message too long to bridge")
		return &event.MessageEventContent{
			MsgType:  event.MsgNotice,
			Body:     fmt.Sprintf("A Slack message of %d bytes was too long to bridge.", len(text)),
			Mentions: &event.Mentions{},
		}
	}
	converted := mrkdwnToMatrix(text, mrkdwnResolver{
		User: func(userID string) (idUser id.UserID, name string, ok bool) {
			return sc.ghostMXID(ctx, userID)
		},
		Channel: func(channelID string) string {
			portal, err := sc.connector.Bridge.GetExistingPortalByKey(ctx, portalKey(sc.meta.TeamID, channelID))
			if err != nil || portal == nil {
				return ""
			}
			return strings.TrimPrefix(portal.Name, "#")
		},
	})
	content := &event.MessageEventContent{
		MsgType:  msgType,
		Body:     converted.Body,
		Mentions: &event.Mentions{UserIDs: converted.Mentions},
	}
	if converted.FormattedBody != "" {
		content.Format = event.FormatHTML
		content.FormattedBody = converted.FormattedBody
	}
	if content.Body == "" {
		content.Body = " "
	}
	return content
}

// convertFile downloads a Slack file and uploads it to the Matrix media
// repository (encrypted in an encrypted room). A file the bridge cannot
// take (too large, external) becomes a notice; a failed transfer is an
// error, so the event stays unacknowledged and is tried again.
func (sc *Client) convertFile(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, f *slackapi.File) (*bridgev2.ConvertedMessagePart, error) {
	name := f.Name
	if name == "" {
		name = f.Title
	}
	if name == "" {
		name = f.ID
	}
	notice := func(body string) *bridgev2.ConvertedMessagePart {
		return &bridgev2.ConvertedMessagePart{
			ID:      filePartID(f.ID),
			Type:    event.EventMessage,
			Content: &event.MessageEventContent{MsgType: event.MsgNotice, Body: body, Mentions: &event.Mentions{}},
		}
	}
	url := f.URLPrivateDownload
	if url == "" {
		url = f.URLPrivate
	}
	limit := sc.connector.maxFileSize
	switch {
	case f.IsExternal || url == "":
		return notice(fmt.Sprintf("A file the bridge cannot fetch was shared on Slack: %s", name)), nil
	case int64(f.Size) > limit:
		return notice(fmt.Sprintf("A file too large to bridge (%d bytes) was shared on Slack: %s", f.Size, name)), nil
	}
	data, err := sc.downloadFile(ctx, url, limit)
	if err != nil {
		if errors.Is(err, errFileTooLarge) {
			return notice(fmt.Sprintf("A file too large to bridge was shared on Slack: %s", name)), nil
		}
		return nil, fmt.Errorf("downloading Slack file %s: %w", f.ID, err)
	}
	mimeType := f.Mimetype
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	content := &event.MessageEventContent{
		MsgType:  bridges.MessageTypeFor(mimeType),
		Body:     name,
		FileName: name,
		Info:     &event.FileInfo{MimeType: mimeType, Size: len(data)},
		Mentions: &event.Mentions{},
	}
	content.URL, content.File, err = intent.UploadMedia(ctx, portal.MXID, data, name, mimeType)
	if err != nil {
		return nil, fmt.Errorf("uploading Slack file %s to Matrix: %w", f.ID, err)
	}
	return &bridgev2.ConvertedMessagePart{ID: filePartID(f.ID), Type: event.EventMessage, Content: content}, nil
}

// convertEdit replaces the text part of an edited message.
func (sc *Client) convertEdit(ctx context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, existing []*database.Message, msg *slackapi.Msg) (*bridgev2.ConvertedEdit, error) {
	for _, part := range existing {
		if part.PartID != "" {
			continue
		}
		content := sc.convertText(ctx, msg.Text, event.MsgText)
		return &bridgev2.ConvertedEdit{ModifiedParts: []*bridgev2.ConvertedEditPart{{
			Part: part, Type: event.EventMessage, Content: content,
		}}}, nil
	}
	return nil, fmt.Errorf("%w: the edited Slack message has no text part", bridgev2.ErrIgnoringRemoteEvent)
}
