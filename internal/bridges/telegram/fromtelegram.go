package telegram

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gotd/td/telegram"
	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
)

// updateHandler dispatches the updates of a login's account to bridgev2.
// A panic while handling one update (a bug meeting input nobody foresaw)
// is contained to it: logged and reported as a bridge state, and the
// updates after it are handled as usual.
type updateHandler struct {
	client     *Client
	dispatcher tg.UpdateDispatcher
}

func newUpdateHandler(tc *Client) *updateHandler {
	h := &updateHandler{client: tc, dispatcher: tg.NewUpdateDispatcher()}
	h.dispatcher.OnNewMessage(func(ctx context.Context, e tg.Entities, u *tg.UpdateNewMessage) error {
		tc.remember(ctx, e)
		if m, ok := u.Message.(*tg.Message); ok {
			return tc.queueMessage(m)
		}
		return nil
	})
	h.dispatcher.OnEditMessage(func(ctx context.Context, e tg.Entities, u *tg.UpdateEditMessage) error {
		tc.remember(ctx, e)
		if m, ok := u.Message.(*tg.Message); ok {
			return tc.queueEdit(m)
		}
		return nil
	})
	h.dispatcher.OnDeleteMessages(func(ctx context.Context, _ tg.Entities, u *tg.UpdateDeleteMessages) error {
		return tc.queueDeletes(ctx, 0, u.Messages)
	})
	h.dispatcher.OnNewChannelMessage(func(ctx context.Context, e tg.Entities, u *tg.UpdateNewChannelMessage) error {
		tc.remember(ctx, e)
		if m, ok := u.Message.(*tg.Message); ok {
			return tc.queueMessage(m)
		}
		return nil
	})
	h.dispatcher.OnEditChannelMessage(func(ctx context.Context, e tg.Entities, u *tg.UpdateEditChannelMessage) error {
		tc.remember(ctx, e)
		if m, ok := u.Message.(*tg.Message); ok {
			return tc.queueEdit(m)
		}
		return nil
	})
	h.dispatcher.OnDeleteChannelMessages(func(ctx context.Context, _ tg.Entities, u *tg.UpdateDeleteChannelMessages) error {
		return tc.queueDeletes(ctx, u.ChannelID, u.Messages)
	})
	h.dispatcher.OnMessageReactions(func(ctx context.Context, e tg.Entities, u *tg.UpdateMessageReactions) error {
		tc.remember(ctx, e)
		return tc.queueReactions(u)
	})
	tc.onReceiptsAndTyping(h.dispatcher)
	return h
}

// Handle implements telegram.UpdateHandler.
func (h *updateHandler) Handle(ctx context.Context, u tg.UpdatesClass) (err error) {
	defer h.client.recoverPanic("handling a Telegram update", func() { err = nil })
	return h.dispatcher.Handle(ctx, u)
}

var _ telegram.UpdateHandler = (*updateHandler)(nil)

// recoverPanic, deferred, turns a panic of the goroutine into a logged
// error and an unknown-error bridge state instead of a crash of the whole
// node, then runs cleanup (nil for none).
func (tc *Client) recoverPanic(what string, cleanup func()) {
	v := recover()
	if v == nil {
		return
	}
	tc.login.Log.Error().Any("panic", v).Str("stack", string(debug.Stack())).Msg("Panic while " + what)
	tc.login.BridgeState.Send(status.BridgeState{
		StateEvent: status.StateUnknownError, Error: "tg-panic", Message: fmt.Sprintf("panic while %s: %v", what, v),
	})
	if cleanup != nil {
		cleanup()
	}
}

// senderOf is who sent a message: the account itself for an outgoing
// one, else the user it is from (in a private chat, the other user). A
// broadcast channel's post, from the channel itself, is the bridge bot's.
func (tc *Client) senderOf(m *tg.Message) bridgev2.EventSender {
	from := int64(0)
	switch {
	case m.Out:
		from = tc.selfID()
	case m.FromID != nil:
		if user, ok := m.FromID.(*tg.PeerUser); ok {
			from = user.UserID
		}
	case m.Post:
		return bridgev2.EventSender{}
	default:
		if user, ok := m.PeerID.(*tg.PeerUser); ok {
			from = user.UserID
		}
	}
	return bridgev2.EventSender{IsFromMe: m.Out, Sender: ghostID(from), SenderLogin: tc.login.ID}
}

// queueMessage hands a message of a private chat or basic group to
// bridgev2 and returns once it is in Matrix.
func (tc *Client) queueMessage(m *tg.Message) error {
	key, ok := tc.portalKey(m.PeerID)
	if !ok {
		return nil
	}
	return handled("message", tc.login.QueueRemoteEvent(&simplevent.Message[*tg.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    key,
			Sender:       tc.senderOf(m),
			CreatePortal: true,
			Timestamp:    time.Unix(int64(m.Date), 0),
		},
		ID:                 messageID(m.PeerID, m.ID),
		Data:               m,
		ConvertMessageFunc: tc.convertMessage,
	}))
}

// queueEdit hands a private message's edit to bridgev2. The edit Telegram
// answers an edit from Matrix with comes back here too: bridgev2 drops it,
// its sender (the account's ghost) not being the Matrix user who sent the
// message.
func (tc *Client) queueEdit(m *tg.Message) error {
	key, ok := tc.portalKey(m.PeerID)
	if !ok {
		return nil
	}
	edited := time.Unix(int64(m.Date), 0)
	if date, ok := m.GetEditDate(); ok {
		edited = time.Unix(int64(date), 0)
	}
	return handled("edit", tc.login.QueueRemoteEvent(&simplevent.Message[*tg.Message]{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventEdit,
			PortalKey: key,
			Sender:    tc.senderOf(m),
			Timestamp: edited,
		},
		ID:            messageID(m.PeerID, m.ID),
		TargetMessage: messageID(m.PeerID, m.ID),
		Data:          m,
		ConvertEditFunc: func(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, existing []*database.Message, m *tg.Message) (*bridgev2.ConvertedEdit, error) {
			if _, ok := document(m); ok || isPhoto(m) {
				return nil, fmt.Errorf("%w: a file's caption edit is not bridged", bridgev2.ErrIgnoringRemoteEvent)
			}
			converted, err := tc.convertMessage(ctx, portal, intent, m)
			if err != nil {
				return nil, err
			}
			return &bridgev2.ConvertedEdit{ModifiedParts: []*bridgev2.ConvertedEditPart{converted.Parts[0].ToEditPart(existing[0])}}, nil
		},
	}))
}

// queueDeletes hands deleted messages of a channel (0: of the private
// chats and basic groups) to bridgev2. Telegram names only the messages'
// IDs, so each one's chat is the one it was bridged to.
func (tc *Client) queueDeletes(ctx context.Context, channel int64, ids []int) error {
	for _, id := range ids {
		part, err := tc.connector.Bridge.DB.Message.GetFirstPartByID(ctx, tc.login.ID, messageIDIn(channel, id))
		if err != nil {
			return fmt.Errorf("finding deleted message %d: %w", id, err)
		}
		if part == nil {
			continue // never bridged, or deleted from Matrix
		}
		res := tc.login.QueueRemoteEvent(&simplevent.MessageRemove{
			EventMeta: simplevent.EventMeta{
				Type:      bridgev2.RemoteEventMessageRemove,
				PortalKey: part.Room,
				Sender:    bridgev2.EventSender{IsFromMe: part.SenderID == ghostID(tc.selfID()), Sender: part.SenderID, SenderLogin: tc.login.ID},
				Timestamp: time.Now(),
			},
			TargetMessage: messageIDIn(channel, id),
		})
		if err := handled("delete", res); err != nil {
			return err
		}
	}
	return nil
}

// queueReactions hands a message's reactions to bridgev2 as the full
// list: who reacted with what (one emoji each), so reactions taken back
// disappear too.
func (tc *Client) queueReactions(u *tg.UpdateMessageReactions) error {
	key, ok := tc.portalKey(u.Peer)
	if !ok {
		return nil
	}
	users := map[networkid.UserID]*bridgev2.ReactionSyncUser{}
	for _, r := range u.Reactions.RecentReactions {
		emoji, ok := r.Reaction.(*tg.ReactionEmoji)
		who, isUser := r.PeerID.(*tg.PeerUser)
		if !ok || !isUser {
			continue // custom emoji and paid reactions are not bridged
		}
		sender := bridgev2.EventSender{IsFromMe: who.UserID == tc.selfID(), Sender: ghostID(who.UserID), SenderLogin: tc.login.ID}
		users[sender.Sender] = &bridgev2.ReactionSyncUser{
			HasAllReactions: true,
			Reactions: []*bridgev2.BackfillReaction{{
				Sender:    sender,
				Emoji:     emoji.Emoticon,
				Timestamp: time.Unix(int64(r.Date), 0),
			}},
		}
	}
	return handled("reactions", tc.login.QueueRemoteEvent(&simplevent.ReactionSync{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventReactionSync,
			PortalKey: key,
			Timestamp: time.Now(),
		},
		TargetMessage: messageID(u.Peer, u.MsgID),
		Reactions:     &bridgev2.ReactionSyncData{Users: users, HasAllUsers: true},
	}))
}

// handled turns how bridgev2 handled a Telegram event into the update
// handler's answer: an error for a failure, so that gotd does not advance
// the account's update state (pts) past an event Matrix never got and
// fetches it again. Events are handled synchronously (see Connector.Init),
// so a success means the event is in Matrix.
func handled(what string, res bridgev2.EventHandlingResult) error {
	switch {
	case res.Queued:
		return fmt.Errorf("bridging a Telegram %s: queued, not handled: the portal event buffer must be 0", what)
	case res.Success, res.Ignored:
		return nil
	case res.Error != nil:
		return fmt.Errorf("bridging a Telegram %s: %w", what, res.Error)
	default:
		return fmt.Errorf("bridging a Telegram %s failed", what)
	}
}

func (tc *Client) convertMessage(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, m *tg.Message) (*bridgev2.ConvertedMessage, error) {
	part := &bridgev2.ConvertedMessagePart{
		Type:    event.EventMessage,
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: m.Message},
	}
	if doc, ok := document(m); ok {
		content, err := tc.convertDocument(ctx, portal, intent, m, doc)
		if err != nil {
			return nil, err
		}
		part.Content = content
		if isSticker(doc) {
			part.Type, content.MsgType = event.EventSticker, ""
		}
	} else if p, ok := photo(m); ok {
		content, err := tc.convertPhoto(ctx, portal, intent, m, p)
		if err != nil {
			return nil, err
		}
		part.Content = content
	}
	converted := &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{part}}
	if reply, ok := m.ReplyTo.(*tg.MessageReplyHeader); ok && reply.ReplyToMsgID != 0 {
		converted.ReplyTo = &networkid.MessageOptionalPartID{MessageID: messageID(m.PeerID, reply.ReplyToMsgID)}
	}
	return converted, nil
}
