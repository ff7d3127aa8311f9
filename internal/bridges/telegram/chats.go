package telegram

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
)

// A portal's ID names its Telegram chat: "user:<id>" a private chat with
// that user, "chat:<id>" a basic group, "channel:<id>" a supergroup or a
// broadcast channel.
const (
	userPortalPrefix    = "user:"
	chatPortalPrefix    = "chat:"
	channelPortalPrefix = "channel:"
)

// chatRef is a bridged Telegram chat: a private chat with a user, a basic
// group, or a channel (supergroup or broadcast).
type chatRef struct {
	user    int64
	chat    int64
	channel int64
}

// portalKey is the portal of a chat the account is in.
func (tc *Client) portalKey(peer tg.PeerClass) (networkid.PortalKey, bool) {
	var id string
	switch peer := peer.(type) {
	case *tg.PeerUser:
		id = userPortalPrefix + strconv.FormatInt(peer.UserID, 10)
	case *tg.PeerChat:
		id = chatPortalPrefix + strconv.FormatInt(peer.ChatID, 10)
	case *tg.PeerChannel:
		id = channelPortalPrefix + strconv.FormatInt(peer.ChannelID, 10)
	default:
		return networkid.PortalKey{}, false
	}
	return networkid.PortalKey{ID: networkid.PortalID(id), Receiver: tc.login.ID}, true
}

func parsePortalID(id networkid.PortalID) (chatRef, error) {
	for _, kind := range []struct {
		prefix string
		set    func(*chatRef, int64)
	}{
		{userPortalPrefix, func(r *chatRef, id int64) { r.user = id }},
		{chatPortalPrefix, func(r *chatRef, id int64) { r.chat = id }},
		{channelPortalPrefix, func(r *chatRef, id int64) { r.channel = id }},
	} {
		if rest, ok := strings.CutPrefix(string(id), kind.prefix); ok {
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || n <= 0 {
				return chatRef{}, fmt.Errorf("portal ID %q: bad Telegram ID", id)
			}
			var ref chatRef
			kind.set(&ref, n)
			return ref, nil
		}
	}
	return chatRef{}, fmt.Errorf("portal ID %q names no Telegram chat", id)
}

// peer is the Telegram peer of a portal.
func (tc *Client) peer(ctx context.Context, portal *bridgev2.Portal) (tg.InputPeerClass, error) {
	ref, err := parsePortalID(portal.ID)
	if err != nil {
		return nil, err
	}
	switch {
	case ref.chat != 0:
		return &tg.InputPeerChat{ChatID: ref.chat}, nil
	case ref.channel != 0:
		return tc.channelPeer(ref.channel), nil
	}
	u, err := tc.user(ctx, ref.user)
	if err != nil {
		return nil, err
	}
	return &tg.InputPeerUser{UserID: u.ID, AccessHash: u.AccessHash}, nil
}

// GetChatInfo describes a portal's chat: a private chat is a DM with the
// other user's ghost, a basic group a room named after it with its members.
func (tc *Client) GetChatInfo(ctx context.Context, portal *bridgev2.Portal) (*bridgev2.ChatInfo, error) {
	ref, err := parsePortalID(portal.ID)
	if err != nil {
		return nil, err
	}
	switch {
	case ref.chat != 0:
		return tc.groupInfo(ctx, ref.chat)
	case ref.channel != 0:
		return tc.channelInfo(ctx, ref.channel)
	}
	roomType := database.RoomTypeDM
	return &bridgev2.ChatInfo{
		Type: &roomType,
		Members: &bridgev2.ChatMemberList{
			IsFull:      true,
			OtherUserID: ghostID(ref.user),
			Members: []bridgev2.ChatMember{
				{EventSender: tc.self(), Membership: event.MembershipJoin},
				{EventSender: bridgev2.EventSender{Sender: ghostID(ref.user)}, Membership: event.MembershipJoin},
			},
		},
	}, nil
}

// self is the account as a sender.
func (tc *Client) self() bridgev2.EventSender {
	return bridgev2.EventSender{IsFromMe: true, Sender: ghostID(tc.selfID()), SenderLogin: tc.login.ID}
}

// groupInfo asks Telegram for a basic group's title and members.
func (tc *Client) groupInfo(ctx context.Context, chat int64) (*bridgev2.ChatInfo, error) {
	api, err := tc.client()
	if err != nil {
		return nil, err
	}
	full, err := withFloodWait(ctx, func() (*tg.MessagesChatFull, error) { return api.MessagesGetFullChat(ctx, chat) })
	if err != nil {
		return nil, fmt.Errorf("messages.getFullChat %d: %w", chat, err)
	}
	for _, u := range full.Users {
		if u, ok := u.(*tg.User); ok {
			tc.rememberUser(ctx, u)
		}
	}
	info := &bridgev2.ChatInfo{Members: &bridgev2.ChatMemberList{MemberMap: bridgev2.ChatMemberMap{}}}
	roomType := database.RoomTypeDefault
	info.Type = &roomType
	for _, c := range full.Chats {
		if c, ok := c.(*tg.Chat); ok && c.ID == chat {
			title := c.Title
			info.Name = &title
		}
	}
	if fullChat, ok := full.FullChat.(*tg.ChatFull); ok {
		if participants, ok := fullChat.Participants.(*tg.ChatParticipants); ok {
			info.Members.IsFull = true
			for _, p := range participants.Participants {
				user := p.GetUserID()
				sender := bridgev2.EventSender{Sender: ghostID(user)}
				if user == tc.selfID() {
					sender = tc.self()
				}
				info.Members.MemberMap.Set(bridgev2.ChatMember{EventSender: sender, Membership: event.MembershipJoin})
			}
		}
	}
	info.Members.MemberMap.Set(bridgev2.ChatMember{EventSender: tc.self(), Membership: event.MembershipJoin})
	return info, nil
}
