package telegramfake

import (
	"context"
	"slices"
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// channel is a supergroup or (broadcast) channel: one history and one pts
// for all its members, as Telegram keeps them, and message IDs of its own.
type channel struct {
	title      string
	broadcast  bool
	creator    int64
	members    []int64
	accessHash int64
	pts        int
	log        []logged // updates with the pts they ended at
	history    []*tg.Message
	nextMsg    int
	// lose is how many of the next updates are not pushed (a gap the
	// client finds by pts and fills with updates.getChannelDifference).
	lose int
	// diffLimit, when not 0, is the most updates getChannelDifference
	// gives; past it the answer is channelDifferenceTooLong.
	diffLimit int
}

// view is the channel as a member sees it (with their access hash).
func (c *channel) view(id, user int64) *tg.Channel {
	ch := &tg.Channel{ID: id, Title: c.title, Photo: &tg.ChatPhotoEmpty{}, Date: 1,
		Broadcast: c.broadcast, Megagroup: !c.broadcast, Creator: user == c.creator}
	ch.SetAccessHash(c.accessHash)
	ch.SetParticipantsCount(len(c.members))
	return ch
}

// AddChannel creates a supergroup (broadcast false) or a broadcast channel
// owned by creator, with the members (the creator among them), and returns
// its ID. Only the creator may post in a broadcast channel.
func (s *Server) AddChannel(title string, broadcast bool, creator int64, members ...int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextChannel++
	if !slices.Contains(members, creator) {
		members = append([]int64{creator}, members...)
	}
	s.channels[s.nextChannel] = &channel{title: title, broadcast: broadcast, creator: creator, members: members,
		accessHash: s.nextChannel * 104729}
	return s.nextChannel
}

// ChannelAccessHash is a channel's access hash, as its members see it.
func (s *Server) ChannelAccessHash(id int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.channels[id].accessHash
}

// LoseChannelUpdates makes the channel's next n updates reach no one
// (the members' clients see a pts gap at the next one).
func (s *Server) LoseChannelUpdates(id int64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id].lose = n
}

// LimitChannelDifference makes getChannelDifference answer
// channelDifferenceTooLong when more than n updates were missed.
func (s *Server) LimitChannelDifference(id int64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id].diffLimit = n
}

// PostInChannel sends text from a member to a channel, as if typed in a
// Telegram app, and returns the message ID.
func (s *Server) PostInChannel(from, id int64, text string) int {
	msgID, err := s.post(context.Background(), from, id, text, 0)
	if err != nil {
		s.t.Errorf("telegramfake: PostInChannel %d: %v", id, err)
	}
	return msgID
}

// EditInChannel changes a channel message's text, as its sender would.
func (s *Server) EditInChannel(id int64, msgID int, text string) {
	s.channelChange(id, func(c *channel) tg.UpdateClass {
		u, err := c.edit(msgID, text)
		if err != nil {
			s.t.Errorf("telegramfake: EditInChannel %d: %v", id, err)
		}
		return u
	})
}

// edit changes a message's text and returns its update (nil and an error
// for no such message).
func (c *channel) edit(msgID int, text string) (tg.UpdateClass, error) {
	for _, m := range c.history {
		if m.ID == msgID {
			m.Message = text
			m.SetEditDate(int(time.Now().Unix()))
			c.pts++
			return &tg.UpdateEditChannelMessage{Message: m, Pts: c.pts, PtsCount: 1}, nil
		}
	}
	return nil, tgerr.New(400, "MESSAGE_ID_INVALID")
}

// DeleteInChannel deletes channel messages for everyone.
func (s *Server) DeleteInChannel(id int64, msgIDs ...int) {
	s.channelChange(id, func(c *channel) tg.UpdateClass { return c.remove(id, msgIDs) })
}

// remove deletes messages and returns the update.
func (c *channel) remove(id int64, msgIDs []int) *tg.UpdateDeleteChannelMessages {
	c.history = slices.DeleteFunc(c.history, func(m *tg.Message) bool { return slices.Contains(msgIDs, m.ID) })
	c.pts += len(msgIDs)
	return &tg.UpdateDeleteChannelMessages{ChannelID: id, Messages: msgIDs, Pts: c.pts, PtsCount: len(msgIDs)}
}

// editInChannel is messages.editMessage in a channel: the sender's own
// messages only (in a broadcast channel, the creator's posts).
func (s *Server) editInChannel(c call, peer *tg.InputPeerChannel, msgID int, text string) (bin.Encoder, error) {
	var own tg.UpdateClass
	err := s.channelChangeErr(peer.ChannelID, func(ch *channel) (tg.UpdateClass, error) {
		if _, err := s.channelOf(c.user, peer.ChannelID, peer.AccessHash); err != nil {
			return nil, err
		}
		if !ch.sentBy(msgID, c.user) {
			return nil, tgerr.New(403, "MESSAGE_AUTHOR_REQUIRED")
		}
		u, err := ch.edit(msgID, text)
		own = u
		return u, err
	}, func(member int64) bool { return member != c.user })
	if err != nil {
		return nil, err
	}
	return s.answer(c.user, own), nil
}

// sentBy reports whether user sent a message of the channel.
func (c *channel) sentBy(msgID int, user int64) bool {
	for _, m := range c.history {
		if m.ID == msgID {
			from, ok := m.FromID.(*tg.PeerUser)
			return (ok && from.UserID == user) || (m.Post && user == c.creator)
		}
	}
	return false
}

func (s *Server) deleteChannelMessages(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.ChannelsDeleteMessagesRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	id, hash := inputChannel(r.Channel)
	var affected *tg.MessagesAffectedMessages
	err := s.channelChangeErr(id, func(ch *channel) (tg.UpdateClass, error) {
		if _, err := s.channelOf(c.user, id, hash); err != nil {
			return nil, err
		}
		for _, msgID := range r.ID {
			if !ch.sentBy(msgID, c.user) && c.user != ch.creator {
				return nil, tgerr.New(403, "MESSAGE_DELETE_FORBIDDEN")
			}
		}
		u := ch.remove(id, r.ID)
		affected = &tg.MessagesAffectedMessages{Pts: u.Pts, PtsCount: u.PtsCount}
		return u, nil
	}, func(member int64) bool { return member != c.user })
	if err != nil {
		return nil, err
	}
	return affected, nil
}

// ChannelMessages returns a channel's messages.
func (s *Server) ChannelMessages(id int64) []tg.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tg.Message
	for _, m := range s.channels[id].history {
		out = append(out, *m)
	}
	return out
}

// post stores a message in a channel, logs its updateNewChannelMessage and
// pushes it to the members online but the sender when the sender's call
// made it (who learns of it from the call's answer).
func (s *Server) post(ctx context.Context, from, id int64, text string, randomID int64) (int, error) {
	var msgID int
	err := s.channelChangeErr(id, func(c *channel) (tg.UpdateClass, error) {
		if !slices.Contains(c.members, from) {
			return nil, tgerr.New(400, "CHANNEL_PRIVATE")
		}
		if c.broadcast && from != c.creator {
			return nil, tgerr.New(403, "CHAT_WRITE_FORBIDDEN")
		}
		c.nextMsg++
		msgID = c.nextMsg
		msg := &tg.Message{ID: msgID, PeerID: &tg.PeerChannel{ChannelID: id}, Date: int(time.Now().Unix()), Message: text}
		if !c.broadcast {
			msg.SetFromID(&tg.PeerUser{UserID: from})
		} else {
			msg.Post = true
		}
		c.history = append(c.history, msg)
		c.pts++
		return &tg.UpdateNewChannelMessage{Message: msg, Pts: c.pts, PtsCount: 1}, nil
	}, func(member int64) bool { return member != from || ctx == context.Background() })
	return msgID, err
}

// channelChange applies a change made on Telegram's side; see channelChangeErr.
func (s *Server) channelChange(id int64, change func(*channel) tg.UpdateClass) {
	if err := s.channelChangeErr(id, func(c *channel) (tg.UpdateClass, error) { return change(c), nil }, nil); err != nil {
		s.t.Errorf("telegramfake: channel %d: %v", id, err)
	}
}

// channelChangeErr makes a change to a channel under the lock, logs the
// update it returns and pushes it to the members online that to accepts
// (nil: all), unless the update is to be lost.
func (s *Server) channelChangeErr(id int64, change func(*channel) (tg.UpdateClass, error), to func(member int64) bool) error {
	s.mu.Lock()
	c, ok := s.channels[id]
	if !ok {
		s.mu.Unlock()
		return tgerr.New(400, "CHANNEL_INVALID")
	}
	update, err := change(c)
	if err != nil || update == nil {
		s.mu.Unlock()
		return err
	}
	c.log = append(c.log, logged{pts: c.pts, update: update})
	var pushes []func()
	if c.lose > 0 {
		c.lose--
	} else {
		for _, member := range c.members {
			session, online := s.live[member]
			if online && (to == nil || to(member)) {
				updates := s.updatesLocked(member, update)
				pushes = append(pushes, func() { s.push(session, updates) })
			}
		}
	}
	s.mu.Unlock()
	for _, push := range pushes {
		push()
	}
	return nil
}

// channelOf finds the channel an InputChannel or InputPeerChannel names,
// checking its access hash and that user is a member.
func (s *Server) channelOf(user, id, accessHash int64) (*channel, error) {
	c, ok := s.channels[id]
	switch {
	case !ok || c.accessHash != accessHash:
		return nil, tgerr.New(400, "CHANNEL_INVALID")
	case !slices.Contains(c.members, user):
		return nil, tgerr.New(400, "CHANNEL_PRIVATE")
	}
	return c, nil
}

func inputChannel(in tg.InputChannelClass) (id, hash int64) {
	if in, ok := in.(*tg.InputChannel); ok {
		return in.ChannelID, in.AccessHash
	}
	return 0, 0
}

// sendToChannel is messages.sendMessage to a channel: the answer carries
// the sent message's ID (by random_id) and its updateNewChannelMessage.
func (s *Server) sendToChannel(c call, peer *tg.InputPeerChannel, text string, randomID int64) (bin.Encoder, error) {
	s.mu.Lock()
	_, err := s.channelOf(c.user, peer.ChannelID, peer.AccessHash)
	key := randomKey{c.user, randomID}
	msgID, repeat := s.randoms[key]
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !repeat {
		if msgID, err = s.post(c.req.RequestCtx, c.user, peer.ChannelID, text, randomID); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.randoms[key] = msgID
	ch := s.channels[peer.ChannelID]
	var sent tg.UpdateClass
	for _, l := range ch.log {
		if u, ok := l.update.(*tg.UpdateNewChannelMessage); ok && u.Message.GetID() == msgID {
			sent = u
		}
	}
	answer := s.updatesLocked(c.user, &tg.UpdateMessageID{ID: msgID, RandomID: randomID})
	if sent != nil {
		answer.Updates = append(answer.Updates, sent)
	}
	return answer, nil
}

func (s *Server) getChannelDifference(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.UpdatesGetChannelDifferenceRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	id, hash := inputChannel(r.Channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, err := s.channelOf(c.user, id, hash)
	if err != nil {
		return nil, err
	}
	s.channelSynced[id]++
	var messages []tg.MessageClass
	var others []tg.UpdateClass
	missed := 0
	for _, l := range ch.log {
		if l.pts <= r.Pts {
			continue
		}
		missed++
		if m, ok := l.update.(*tg.UpdateNewChannelMessage); ok {
			messages = append(messages, m.Message)
		} else {
			others = append(others, l.update)
		}
	}
	chats := []tg.ChatClass{ch.view(id, c.user)}
	switch {
	case missed == 0:
		return &tg.UpdatesChannelDifferenceEmpty{Final: true, Pts: ch.pts}, nil
	case ch.diffLimit > 0 && missed > ch.diffLimit:
		var latest []tg.MessageClass
		for _, m := range ch.history[max(0, len(ch.history)-ch.diffLimit):] {
			latest = append(latest, m)
		}
		top := 0
		if len(ch.history) > 0 {
			top = ch.history[len(ch.history)-1].ID
		}
		dialog := &tg.Dialog{Peer: &tg.PeerChannel{ChannelID: id}, TopMessage: top, NotifySettings: tg.PeerNotifySettings{}}
		dialog.SetPts(ch.pts)
		return &tg.UpdatesChannelDifferenceTooLong{Final: true, Dialog: dialog, Messages: latest,
			Chats: chats, Users: s.allUsersLocked(c.user)}, nil
	}
	return &tg.UpdatesChannelDifference{Final: true, Pts: ch.pts, NewMessages: messages, OtherUpdates: others,
		Chats: chats, Users: s.allUsersLocked(c.user)}, nil
}

// ChannelSyncs is how many times a member's clients asked for a channel's
// difference.
func (s *Server) ChannelSyncs(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.channelSynced[id]
}

func (s *Server) getChannels(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.ChannelsGetChannelsRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &tg.MessagesChats{}
	for _, in := range r.ID {
		id, hash := inputChannel(in)
		if _, err := s.channelOf(c.user, id, hash); err != nil {
			return nil, err
		}
		out.Chats = append(out.Chats, s.channels[id].view(id, c.user))
	}
	return out, nil
}

func (s *Server) getParticipants(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.ChannelsGetParticipantsRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	id, hash := inputChannel(r.Channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, err := s.channelOf(c.user, id, hash)
	if err != nil {
		return nil, err
	}
	out := &tg.ChannelsChannelParticipants{Count: len(ch.members), Users: s.allUsersLocked(c.user)}
	for _, member := range ch.members[min(r.Offset, len(ch.members)):min(r.Offset+r.Limit, len(ch.members))] {
		if member == ch.creator {
			out.Participants = append(out.Participants, &tg.ChannelParticipantCreator{UserID: member, AdminRights: tg.ChatAdminRights{PostMessages: true}})
		} else {
			out.Participants = append(out.Participants, &tg.ChannelParticipant{UserID: member, Date: 1})
		}
	}
	return out, nil
}

// channelsOfLocked are the channels a user is a member of.
func (s *Server) channelsOfLocked(user int64) []tg.ChatClass {
	var out []tg.ChatClass
	for id, c := range s.channels {
		if slices.Contains(c.members, user) {
			out = append(out, c.view(id, user))
		}
	}
	return out
}

// getHistory answers a channel's latest messages, newest first (other
// chats' history is not served).
func (s *Server) getHistory(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesGetHistoryRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	peer, ok := r.Peer.(*tg.InputPeerChannel)
	if !ok {
		return nil, tgerr.New(400, "PEER_ID_INVALID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, err := s.channelOf(c.user, peer.ChannelID, peer.AccessHash)
	if err != nil {
		return nil, err
	}
	out := &tg.MessagesChannelMessages{Pts: ch.pts, Count: len(ch.history),
		Chats: []tg.ChatClass{ch.view(peer.ChannelID, c.user)}, Users: s.allUsersLocked(c.user)}
	for i := len(ch.history) - 1; i >= 0 && len(out.Messages) < r.Limit; i-- {
		out.Messages = append(out.Messages, ch.history[i])
	}
	return out, nil
}
