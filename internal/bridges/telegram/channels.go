package telegram

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gotd/td/telegram/updates"
	"github.com/gotd/td/tg"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
)

// Supergroups and broadcast channels ("channels" in MTProto) differ from
// private chats and basic groups in three ways the bridge minds: each has
// an update sequence (pts) of its own, which gotd's updates manager
// follows and catches up with updates.getChannelDifference, and which the
// login's metadata keeps with the channel's access hash so that a
// restarted bridge asks for what it missed; their message IDs are numbered
// per channel, so a channel message's bridgev2 ID is "<channel>.<id>"; and
// in a broadcast channel only its creator and admins post, so its portal
// needs power level 50 to send, which only they get.

// maxChannelMembers is how many of a supergroup's members its portal
// lists (channels.getParticipants, most recent first).
const maxChannelMembers = 200

// channelPowerToPost is the power level a broadcast channel's portal asks
// for sending; its creator and admins have it.
const channelPowerToPost = 50

// messageID is the bridgev2 ID of a Telegram message in peer's chat.
func messageID(peer tg.PeerClass, id int) networkid.MessageID {
	if ch, ok := peer.(*tg.PeerChannel); ok {
		return messageIDIn(ch.ChannelID, id)
	}
	return messageIDIn(0, id)
}

// messageIDIn is the bridgev2 ID of message id of a channel (0: of a
// private chat or basic group, numbered per account).
func messageIDIn(channel int64, id int) networkid.MessageID {
	if channel == 0 {
		return networkid.MessageID(strconv.Itoa(id))
	}
	return networkid.MessageID(strconv.FormatInt(channel, 10) + "." + strconv.Itoa(id))
}

// inputChannelID is the channel an input peer names, 0 for another peer.
func inputChannelID(peer tg.InputPeerClass) int64 {
	if ch, ok := peer.(*tg.InputPeerChannel); ok {
		return ch.ChannelID
	}
	return 0
}

// isChannelPortal reports whether a portal is a supergroup's or channel's.
func isChannelPortal(portal *bridgev2.Portal) bool {
	return strings.HasPrefix(string(portal.ID), channelPortalPrefix)
}

// channelPeer names a channel to Telegram with the access hash kept for it.
func (tc *Client) channelPeer(channel int64) *tg.InputPeerChannel {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return &tg.InputPeerChannel{ChannelID: channel, AccessHash: tc.meta().ChannelHashes[channel]}
}

// rememberChannel keeps a channel's access hash (a min channel's is no
// good for naming it).
func (tc *Client) rememberChannel(ctx context.Context, ch *tg.Channel) {
	hash, ok := ch.GetAccessHash()
	if ch.Min || !ok {
		return
	}
	err := tc.update(ctx, func(m *UserLoginMetadata) bool { return m.rememberChannelHash(ch.ID, hash) })
	if err != nil {
		tc.login.Log.Warn().Err(err).Int64("channel_id", ch.ID).Msg("Saving a Telegram channel's access hash failed")
	}
}

// rememberChannelHash keeps a channel's access hash and reports whether it
// changed. A user is in at most a few hundred channels, so they are not
// bounded as users' hashes are.
func (m *UserLoginMetadata) rememberChannelHash(channel, hash int64) bool {
	if m.ChannelHashes[channel] == hash {
		return false
	}
	if m.ChannelHashes == nil {
		m.ChannelHashes = map[int64]int64{}
	}
	m.ChannelHashes[channel] = hash
	return true
}

// channelInfo asks Telegram for a channel's title and, for a supergroup,
// its members; a broadcast channel's portal is read-only for who may not
// post in it.
func (tc *Client) channelInfo(ctx context.Context, channel int64) (*bridgev2.ChatInfo, error) {
	api, err := tc.client()
	if err != nil {
		return nil, err
	}
	peer := tc.channelPeer(channel)
	in := &tg.InputChannel{ChannelID: channel, AccessHash: peer.AccessHash}
	chats, err := withFloodWait(ctx, func() (tg.MessagesChatsClass, error) {
		return api.ChannelsGetChannels(ctx, []tg.InputChannelClass{in})
	})
	if err != nil {
		return nil, fmt.Errorf("channels.getChannels %d: %w", channel, err)
	}
	var ch *tg.Channel
	for _, c := range chats.GetChats() {
		if c, ok := c.(*tg.Channel); ok && c.ID == channel {
			ch = c
		}
	}
	if ch == nil {
		return nil, fmt.Errorf("Telegram describes no channel %d", channel)
	}
	tc.rememberChannel(ctx, ch)
	roomType := database.RoomTypeDefault
	title := ch.Title
	info := &bridgev2.ChatInfo{Name: &title, Type: &roomType, Members: &bridgev2.ChatMemberList{MemberMap: bridgev2.ChatMemberMap{}}}
	self := bridgev2.ChatMember{EventSender: tc.self(), Membership: event.MembershipJoin}
	if ch.Broadcast {
		// Its subscribers are not listed (Telegram shows them to admins
		// only); posts come from the bridge bot.
		info.Members.PowerLevels = &bridgev2.PowerLevelOverrides{EventsDefault: ptr(channelPowerToPost)}
		if mayPost(ch) {
			self.PowerLevel = ptr(channelPowerToPost)
		}
		info.Members.MemberMap.Set(self)
		return info, nil
	}
	if err := tc.addChannelMembers(ctx, api, in, info.Members); err != nil {
		return nil, err
	}
	info.Members.MemberMap.Set(self)
	return info, nil
}

// mayPost reports whether the account may post in a broadcast channel.
func mayPost(ch *tg.Channel) bool {
	rights, ok := ch.GetAdminRights()
	return ch.Creator || (ok && rights.PostMessages)
}

// addChannelMembers lists a supergroup's most recent members as ghosts.
func (tc *Client) addChannelMembers(ctx context.Context, api *tg.Client, in *tg.InputChannel, members *bridgev2.ChatMemberList) error {
	answer, err := withFloodWait(ctx, func() (tg.ChannelsChannelParticipantsClass, error) {
		return api.ChannelsGetParticipants(ctx, &tg.ChannelsGetParticipantsRequest{
			Channel: in, Filter: &tg.ChannelParticipantsRecent{}, Limit: maxChannelMembers,
		})
	})
	if err != nil {
		return fmt.Errorf("channels.getParticipants %d: %w", in.ChannelID, err)
	}
	list, ok := answer.(*tg.ChannelsChannelParticipants)
	if !ok {
		return fmt.Errorf("channels.getParticipants %d answered %T", in.ChannelID, answer)
	}
	for _, u := range list.Users {
		if u, ok := u.(*tg.User); ok {
			tc.rememberUser(ctx, u)
		}
	}
	members.IsFull = list.Count <= len(list.Participants)
	for _, p := range list.Participants {
		user, ok := participantUser(p)
		if !ok {
			continue
		}
		sender := bridgev2.EventSender{Sender: ghostID(user)}
		if user == tc.selfID() {
			sender = tc.self()
		}
		members.MemberMap.Set(bridgev2.ChatMember{EventSender: sender, Membership: event.MembershipJoin})
	}
	return nil
}

// participantUser is the user of a channel participant who is in it.
func participantUser(p tg.ChannelParticipantClass) (int64, bool) {
	switch p := p.(type) {
	case *tg.ChannelParticipant:
		return p.UserID, true
	case *tg.ChannelParticipantSelf:
		return p.UserID, true
	case *tg.ChannelParticipantCreator:
		return p.UserID, true
	case *tg.ChannelParticipantAdmin:
		return p.UserID, true
	}
	return 0, false
}

func ptr[T any](v T) *T { return &v }

// The updates manager keeps each channel's pts and access hash here, so
// that a restarted bridge catches up with every channel it knew.

func (s *stateStorage) GetChannelPts(_ context.Context, _, channel int64) (int, bool, error) {
	s.client.mu.Lock()
	defer s.client.mu.Unlock()
	pts, ok := s.client.meta().ChannelPts[channel]
	return pts, ok, nil
}

func (s *stateStorage) SetChannelPts(ctx context.Context, _, channel int64, pts int) error {
	return s.update(ctx, func(m *UserLoginMetadata) {
		if m.ChannelPts == nil {
			m.ChannelPts = map[int64]int{}
		}
		m.ChannelPts[channel] = pts
	})
}

func (s *stateStorage) ForEachChannels(ctx context.Context, _ int64, f func(context.Context, int64, int) error) error {
	s.client.mu.Lock()
	channels := make(map[int64]int, len(s.client.meta().ChannelPts))
	for channel, pts := range s.client.meta().ChannelPts {
		channels[channel] = pts
	}
	s.client.mu.Unlock()
	for channel, pts := range channels {
		if err := f(ctx, channel, pts); err != nil {
			return err
		}
	}
	return nil
}

var _ updates.ChannelAccessHasher = (*stateStorage)(nil)

func (s *stateStorage) SetChannelAccessHash(ctx context.Context, _, channel, hash int64) error {
	return s.client.update(ctx, func(m *UserLoginMetadata) bool { return m.rememberChannelHash(channel, hash) })
}

func (s *stateStorage) GetChannelAccessHash(_ context.Context, _, channel int64) (int64, bool, error) {
	s.client.mu.Lock()
	defer s.client.mu.Unlock()
	hash, ok := s.client.meta().ChannelHashes[channel]
	return hash, ok, nil
}

// catchUpLimit is how many of a channel's latest messages the bridge
// fetches when Telegram will not give what it missed.
const catchUpLimit = 100

// catchUpChannel bridges a channel's latest messages after Telegram
// answered updates.getChannelDifference with channelDifferenceTooLong (too
// much was missed to replay): gotd has moved the channel's pts on, so the
// messages are fetched with messages.getHistory and handed to bridgev2
// oldest first; those bridged before are dropped as repeats by their ID.
// Older ones, and edits and deletes of the gap, are not bridged.
func (tc *Client) catchUpChannel(ctx context.Context, channel int64) {
	log := tc.login.Log.With().Int64("channel_id", channel).Logger()
	log.Warn().Msg("Telegram has too many missed updates of a channel to replay; bridging its latest messages")
	api, err := tc.client()
	if err != nil {
		log.Err(err).Msg("Catching up with a channel failed")
		return
	}
	history, err := withFloodWait(ctx, func() (tg.MessagesMessagesClass, error) {
		return api.MessagesGetHistory(ctx, &tg.MessagesGetHistoryRequest{Peer: tc.channelPeer(channel), Limit: catchUpLimit})
	})
	if err != nil {
		log.Err(err).Msg("messages.getHistory of a channel failed")
		return
	}
	modified, ok := history.AsModified()
	if !ok {
		log.Error().Str("answer", fmt.Sprintf("%T", history)).Msg("messages.getHistory answered no messages")
		return
	}
	for _, u := range modified.GetUsers() {
		if u, ok := u.(*tg.User); ok {
			tc.rememberUser(ctx, u)
		}
	}
	messages := modified.GetMessages()
	for i := len(messages) - 1; i >= 0; i-- { // Telegram gives the newest first
		if m, ok := messages[i].(*tg.Message); ok {
			if err := tc.queueMessage(m); err != nil {
				log.Err(err).Int("message_id", m.ID).Msg("Bridging a channel message failed")
			}
		}
	}
}

// deleteInChannel deletes a channel message for everyone: a channel's
// messages are deleted with channels.deleteMessages (messages.deleteMessages
// names the account's own numbering, where the same ID is another message).
func (tc *Client) deleteInChannel(ctx context.Context, api *tg.Client, portal *bridgev2.Portal, id int) error {
	ref, err := parsePortalID(portal.ID)
	if err != nil {
		return err
	}
	peer := tc.channelPeer(ref.channel)
	affected, err := withFloodWait(ctx, func() (*tg.MessagesAffectedMessages, error) {
		return api.ChannelsDeleteMessages(ctx, &tg.ChannelsDeleteMessagesRequest{
			Channel: &tg.InputChannel{ChannelID: peer.ChannelID, AccessHash: peer.AccessHash}, ID: []int{id},
		})
	})
	if err != nil {
		return refused("delete", err)
	}
	// The answer moves the channel's pts: hand the manager the update it
	// stands for, so that it sees no gap.
	tc.handleOwnUpdate(ctx, &tg.UpdateDeleteChannelMessages{ChannelID: ref.channel, Messages: []int{id}, Pts: affected.Pts, PtsCount: affected.PtsCount})
	return nil
}
