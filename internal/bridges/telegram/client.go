package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gotd/td/telegram"
	"github.com/gotd/td/telegram/updates"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
)

// Client is one logged-in Telegram account.
type Client struct {
	connector *Connector
	login     *bridgev2.UserLogin

	mu      sync.Mutex
	api     *telegram.Client
	stop    context.CancelFunc
	done    chan struct{}
	users   map[int64]*tg.User // users seen in updates, for access hashes and names
	running bool
}

var (
	_ bridgev2.NetworkAPI = (*Client)(nil)
)

func newClient(c *Connector, login *bridgev2.UserLogin) *Client {
	return &Client{connector: c, login: login, users: map[int64]*tg.User{}}
}

func (tc *Client) meta() *UserLoginMetadata { return tc.login.Metadata.(*UserLoginMetadata) }

func (tc *Client) selfID() int64 {
	id, _ := strconv.ParseInt(string(tc.login.ID), 10, 64)
	return id
}

// Connect runs the gotd client and its updates manager until Disconnect.
func (tc *Client) Connect(ctx context.Context) {
	opts, err := tc.connector.clientOptions()
	if err != nil {
		tc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateUnknownError, Error: "tg-config", Message: err.Error()})
		return
	}
	dispatcher := tg.NewUpdateDispatcher()
	dispatcher.OnNewMessage(func(ctx context.Context, e tg.Entities, u *tg.UpdateNewMessage) error {
		tc.remember(e)
		if m, ok := u.Message.(*tg.Message); ok {
			tc.queueMessage(m)
		}
		return nil
	})
	manager := updates.New(updates.Config{Handler: dispatcher, Storage: &stateStorage{client: tc}})
	opts.SessionStorage = &sessionStorage{client: tc}
	opts.UpdateHandler = manager
	api := telegram.NewClient(tc.connector.Config.APIID, tc.connector.Config.APIHash, opts)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	tc.mu.Lock()
	tc.api, tc.stop, tc.done = api, stop, done
	tc.mu.Unlock()
	go func() {
		defer close(done)
		err := api.Run(runCtx, func(ctx context.Context) error {
			self, err := api.Self(ctx)
			if err != nil {
				return fmt.Errorf("reading the account: %w", err)
			}
			tc.rememberUser(self)
			tc.mu.Lock()
			tc.running = true
			tc.mu.Unlock()
			tc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateConnected})
			return manager.Run(ctx, api.API(), self.ID, updates.AuthOptions{})
		})
		tc.mu.Lock()
		tc.running = false
		tc.mu.Unlock()
		if err != nil && !errors.Is(err, context.Canceled) {
			tc.login.Log.Err(err).Msg("Telegram client stopped")
			tc.login.BridgeState.Send(status.BridgeState{StateEvent: status.StateTransientDisconnect, Error: "tg-disconnected", Message: err.Error()})
		}
	}()
}

// Disconnect stops the client and waits for it.
func (tc *Client) Disconnect() {
	tc.mu.Lock()
	stop, done := tc.stop, tc.done
	tc.stop = nil
	tc.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// IsLoggedIn reports whether the account is connected.
func (tc *Client) IsLoggedIn() bool {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.running
}

// LogoutRemote disconnects; the session is dropped with the login.
func (tc *Client) LogoutRemote(context.Context) { tc.Disconnect() }

// IsThisUser reports whether a ghost is the logged-in account.
func (tc *Client) IsThisUser(_ context.Context, userID networkid.UserID) bool {
	return userID == ghostID(tc.selfID())
}

func (tc *Client) remember(e tg.Entities) {
	for _, u := range e.Users {
		tc.rememberUser(u)
	}
}

func (tc *Client) rememberUser(u *tg.User) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.users[u.ID] = u
}

// user returns a known user, asking Telegram for one not seen yet.
func (tc *Client) user(ctx context.Context, id int64) (*tg.User, error) {
	tc.mu.Lock()
	u, ok := tc.users[id]
	api := tc.api
	tc.mu.Unlock()
	if ok {
		return u, nil
	}
	if api == nil {
		return nil, errors.New("not connected to Telegram")
	}
	found, err := api.API().UsersGetUsers(ctx, []tg.InputUserClass{&tg.InputUser{UserID: id}})
	if err != nil {
		return nil, fmt.Errorf("users.getUsers %d: %w", id, err)
	}
	for _, f := range found {
		if u, ok := f.(*tg.User); ok && u.ID == id {
			tc.rememberUser(u)
			return u, nil
		}
	}
	return nil, fmt.Errorf("Telegram knows no user %d", id)
}

// queueMessage hands a private message to bridgev2.
func (tc *Client) queueMessage(m *tg.Message) {
	peer, ok := m.PeerID.(*tg.PeerUser)
	if !ok {
		return
	}
	from := peer.UserID
	if m.Out {
		from = tc.selfID()
	}
	tc.login.QueueRemoteEvent(&simplevent.Message[*tg.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    tc.portalKey(peer.UserID),
			Sender:       bridgev2.EventSender{IsFromMe: m.Out, Sender: ghostID(from), SenderLogin: tc.login.ID},
			CreatePortal: true,
			Timestamp:    time.Unix(int64(m.Date), 0),
		},
		ID:                 messageID(m.ID),
		Data:               m,
		ConvertMessageFunc: tc.convertMessage,
	})
}

func (tc *Client) convertMessage(_ context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, m *tg.Message) (*bridgev2.ConvertedMessage, error) {
	part := &bridgev2.ConvertedMessagePart{
		Type:    event.EventMessage,
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: m.Message},
	}
	converted := &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{part}}
	if reply, ok := m.ReplyTo.(*tg.MessageReplyHeader); ok && reply.ReplyToMsgID != 0 {
		converted.ReplyTo = &networkid.MessageOptionalPartID{MessageID: messageID(reply.ReplyToMsgID)}
	}
	return converted, nil
}

// GetChatInfo describes a private chat: a DM with the other user's ghost.
func (tc *Client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	peer, err := parsePortalID(portal.ID)
	if err != nil {
		return nil, err
	}
	roomType := database.RoomTypeDM
	return &bridgev2.ChatInfo{
		Type: &roomType,
		Members: &bridgev2.ChatMemberList{
			IsFull:      true,
			OtherUserID: ghostID(peer),
			Members: []bridgev2.ChatMember{
				{EventSender: bridgev2.EventSender{IsFromMe: true, Sender: ghostID(tc.selfID()), SenderLogin: tc.login.ID}, Membership: event.MembershipJoin},
				{EventSender: bridgev2.EventSender{Sender: ghostID(peer)}, Membership: event.MembershipJoin},
			},
		},
	}, nil
}

// GetUserInfo names a ghost after the Telegram user.
func (tc *Client) GetUserInfo(ctx context.Context, ghost *bridgev2.Ghost) (*bridgev2.UserInfo, error) {
	id, err := strconv.ParseInt(string(ghost.ID), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("ghost ID %q: %w", ghost.ID, err)
	}
	u, err := tc.user(ctx, id)
	if err != nil {
		return nil, err
	}
	name := displayName(u)
	return &bridgev2.UserInfo{Name: &name, Identifiers: []string{"tel:" + u.Phone}}, nil
}

// GetCapabilities: text with replies.
func (tc *Client) GetCapabilities(context.Context, *bridgev2.Portal) *event.RoomFeatures {
	return &event.RoomFeatures{ID: "org.matrixos.telegram.v1", Reply: event.CapLevelFullySupported}
}

// HandleMatrixMessage sends a Matrix message to the private chat, waiting
// out a FLOOD_WAIT once.
func (tc *Client) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	peerID, err := parsePortalID(msg.Portal.ID)
	if err != nil {
		return nil, err
	}
	peer, err := tc.user(ctx, peerID)
	if err != nil {
		return nil, err
	}
	tc.mu.Lock()
	api := tc.api
	tc.mu.Unlock()
	if api == nil {
		return nil, errors.New("not connected to Telegram")
	}
	req := &tg.MessagesSendMessageRequest{
		Peer:     &tg.InputPeerUser{UserID: peer.ID, AccessHash: peer.AccessHash},
		Message:  msg.Content.Body,
		RandomID: time.Now().UnixNano(),
	}
	if msg.ReplyTo != nil {
		replyTo, err := strconv.Atoi(string(msg.ReplyTo.ID))
		if err == nil {
			req.SetReplyTo(&tg.InputReplyToMessage{ReplyToMsgID: replyTo})
		}
	}
	result, err := sendWithFloodWait(ctx, func() (tg.UpdatesClass, error) { return api.API().MessagesSendMessage(ctx, req) })
	if err != nil {
		return nil, fmt.Errorf("messages.sendMessage: %w", err)
	}
	sent, ok := result.(*tg.UpdateShortSentMessage)
	if !ok {
		return nil, fmt.Errorf("messages.sendMessage answered %T", result)
	}
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID:        messageID(sent.ID),
		SenderID:  ghostID(tc.selfID()),
		Timestamp: time.Unix(int64(sent.Date), 0),
	}}, nil
}

// maxFloodWait bounds how long a call waits out Telegram's FLOOD_WAIT.
const maxFloodWait = time.Minute

// sendWithFloodWait calls f, and once more after the wait a FLOOD_WAIT_X names.
func sendWithFloodWait[T any](ctx context.Context, f func() (T, error)) (T, error) {
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

func (tc *Client) portalKey(peer int64) networkid.PortalKey {
	return networkid.PortalKey{ID: networkid.PortalID("user:" + strconv.FormatInt(peer, 10)), Receiver: tc.login.ID}
}

func parsePortalID(id networkid.PortalID) (int64, error) {
	rest, ok := strings.CutPrefix(string(id), "user:")
	if !ok {
		return 0, fmt.Errorf("portal ID %q is not a private chat", id)
	}
	return strconv.ParseInt(rest, 10, 64)
}

func ghostID(user int64) networkid.UserID {
	return networkid.UserID(strconv.FormatInt(user, 10))
}

func messageID(id int) networkid.MessageID {
	return networkid.MessageID(strconv.Itoa(id))
}
