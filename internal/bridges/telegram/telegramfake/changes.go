package telegramfake

import (
	"time"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// Edit changes the text of a message from, as its sender would in a
// Telegram app; both sides get an updateEditMessage.
func (s *Server) Edit(from int64, msgID int, text string) {
	if _, err := s.edit(from, msgID, text, 0); err != nil {
		s.t.Errorf("telegramfake: Edit %d: %v", msgID, err)
	}
}

// Delete deletes messages of from's private chats for both sides, as
// "delete for everyone" does; both sides get an updateDeleteMessages.
func (s *Server) Delete(from int64, msgIDs ...int) {
	if _, err := s.remove(from, msgIDs, 0); err != nil {
		s.t.Errorf("telegramfake: Delete %v: %v", msgIDs, err)
	}
}

// React sets from's reaction to a message (an emoji; "" takes it back);
// both sides get an updateMessageReactions.
func (s *Server) React(from int64, msgID int, emoji string) {
	if _, err := s.react(from, msgID, emoji, 0); err != nil {
		s.t.Errorf("telegramfake: React %d: %v", msgID, err)
	}
}

// Reactions returns the reactions to a message of user's private chats,
// by the ID of who reacted.
func (s *Server) Reactions(user int64, msgID int) map[int64]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]string{}
	m, _ := s.state[user].find(msgID)
	if m == nil {
		return out
	}
	for _, r := range m.Reactions.RecentReactions {
		emoji, _ := r.Reaction.(*tg.ReactionEmoji)
		peer, _ := r.PeerID.(*tg.PeerUser)
		if emoji != nil && peer != nil {
			out[peer.UserID] = emoji.Emoticon
		}
	}
	return out
}

// find returns the message with an ID in the account's private chats and
// the other user of its chat.
func (a *account) find(id int) (*tg.Message, int64) {
	for peer, history := range a.history {
		for _, m := range history {
			if m.ID == id {
				return m, peer
			}
		}
	}
	return nil, 0
}

// update is a change to one side's copy of a message: it builds that side's
// update with the side's next pts (ptsCount 0: an update without pts,
// neither counted nor replayed by getDifference).
type update func(owner int64, m *tg.Message, pts int) tg.UpdateClass

// change applies f to every copy of message msgID of one of from's chats, logs and pushes each side's update, and returns the caller's (the
// side whose session is caller, which gets it as its call's answer rather
// than pushed; caller 0 is the fake typing, which pushes to both).
func (s *Server) change(from int64, msgID int, ptsCount int, caller int64, f func(m *tg.Message) error, build update) (tg.UpdateClass, error) {
	s.mu.Lock()
	if m, _ := s.state[from].find(msgID); m == nil {
		s.mu.Unlock()
		return nil, tgerr.New(400, "MESSAGE_ID_INVALID")
	}
	var own tg.UpdateClass
	var pushes []func()
	// Message IDs are the fake's, unique across chats: every account with
	// the ID has a copy of the message.
	for owner, acc := range s.state {
		copy, _ := acc.find(msgID)
		if copy == nil {
			continue
		}
		if err := f(copy); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		acc.pts += ptsCount
		u := build(owner, copy, acc.pts)
		if ptsCount > 0 {
			acc.log = append(acc.log, logged{pts: acc.pts, update: u})
		}
		if owner == caller {
			own = u
			continue
		}
		if session, online := s.live[owner]; online {
			updates := s.updatesLocked(owner, u)
			pushes = append(pushes, func() { s.push(session, updates) })
		}
	}
	s.mu.Unlock()
	for _, push := range pushes {
		push()
	}
	return own, nil
}

func (s *Server) edit(from int64, msgID int, text string, caller int64) (tg.UpdateClass, error) {
	now := int(time.Now().Unix())
	return s.change(from, msgID, 1, caller, func(m *tg.Message) error {
		if fromID, _ := m.FromID.(*tg.PeerUser); fromID == nil || fromID.UserID != from {
			return tgerr.New(403, "MESSAGE_AUTHOR_REQUIRED")
		}
		m.Message = text
		m.SetEditDate(now)
		return nil
	}, func(_ int64, m *tg.Message, pts int) tg.UpdateClass {
		cp := *m
		return &tg.UpdateEditMessage{Message: &cp, Pts: pts, PtsCount: 1}
	})
}

// remove deletes messages; the caller's update (an updateDeleteMessages)
// is answered as messages.affectedMessages.
func (s *Server) remove(from int64, msgIDs []int, caller int64) (*tg.MessagesAffectedMessages, error) {
	affected := &tg.MessagesAffectedMessages{}
	for _, id := range msgIDs {
		own, err := s.change(from, id, 1, caller, func(*tg.Message) error { return nil },
			func(owner int64, m *tg.Message, pts int) tg.UpdateClass {
				s.deleteLocked(owner, m.ID)
				return &tg.UpdateDeleteMessages{Messages: []int{m.ID}, Pts: pts, PtsCount: 1}
			})
		if err != nil {
			return nil, err
		}
		if u, ok := own.(*tg.UpdateDeleteMessages); ok {
			affected.Pts, affected.PtsCount = u.Pts, affected.PtsCount+1
		}
	}
	return affected, nil
}

func (s *Server) deleteLocked(owner int64, id int) {
	acc := s.state[owner]
	for peer, history := range acc.history {
		for i, m := range history {
			if m.ID == id {
				acc.history[peer] = append(history[:i:i], history[i+1:]...)
				return
			}
		}
	}
}

func (s *Server) react(from int64, msgID int, emoji string, caller int64) (tg.UpdateClass, error) {
	now := int(time.Now().Unix())
	return s.change(from, msgID, 0, caller, func(m *tg.Message) error {
		var kept []tg.MessagePeerReaction
		for _, r := range m.Reactions.RecentReactions {
			if peer, ok := r.PeerID.(*tg.PeerUser); !ok || peer.UserID != from {
				kept = append(kept, r)
			}
		}
		if emoji != "" {
			kept = append(kept, tg.MessagePeerReaction{PeerID: &tg.PeerUser{UserID: from}, Date: now, Reaction: &tg.ReactionEmoji{Emoticon: emoji}})
		}
		m.SetReactions(reactionsOf(kept))
		return nil
	}, func(owner int64, m *tg.Message, _ int) tg.UpdateClass {
		return &tg.UpdateMessageReactions{Peer: m.PeerID, MsgID: m.ID, Reactions: m.Reactions}
	})
}

// reactionsOf counts the reactions of a private chat's message, where
// everyone can see who reacted.
func reactionsOf(recent []tg.MessagePeerReaction) tg.MessageReactions {
	out := tg.MessageReactions{CanSeeList: true}
	counts := map[string]int{}
	var order []string
	for _, r := range recent {
		emoji := r.Reaction.(*tg.ReactionEmoji).Emoticon
		if counts[emoji] == 0 {
			order = append(order, emoji)
		}
		counts[emoji]++
	}
	for _, emoji := range order {
		out.Results = append(out.Results, tg.ReactionCount{Reaction: &tg.ReactionEmoji{Emoticon: emoji}, Count: counts[emoji]})
	}
	out.SetRecentReactions(recent)
	return out
}

func (s *Server) editMessage(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesEditMessageRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	if peer, ok := r.Peer.(*tg.InputPeerChannel); ok {
		return s.editInChannel(c, peer, r.ID, r.Message)
	}
	own, err := s.edit(c.user, r.ID, r.Message, c.user)
	if err != nil {
		return nil, err
	}
	return s.answer(c.user, own), nil
}

func (s *Server) deleteMessages(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesDeleteMessagesRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	return s.remove(c.user, r.ID, c.user)
}

func (s *Server) sendReaction(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesSendReactionRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	emoji := ""
	switch len(r.Reaction) {
	case 0:
	case 1:
		e, ok := r.Reaction[0].(*tg.ReactionEmoji)
		if !ok {
			return nil, tgerr.New(400, "REACTION_INVALID")
		}
		emoji = e.Emoticon
	default:
		return nil, tgerr.New(400, "REACTIONS_TOO_MANY")
	}
	own, err := s.react(c.user, r.MsgID, emoji, c.user)
	if err != nil {
		return nil, err
	}
	return s.answer(c.user, own), nil
}

// answer wraps the caller's update as a call's tg.Updates answer.
func (s *Server) answer(user int64, u tg.UpdateClass) *tg.Updates {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updatesLocked(user, u)
}
