package telegramfake

import (
	"context"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
	"github.com/gotd/td/tgerr"
)

// Read receipts and typing in private chats: messages.readHistory marks
// the reader's inbox read (updateReadHistoryInbox, with pts) and tells the
// other user their messages were read (updateReadHistoryOutbox, with
// theirs); messages.setTyping shows the caller typing to the other user
// (updateUserTyping, without pts).

// chatKey names one side's view of a private chat: its owner and the peer.
type chatKey struct{ owner, peer int64 }

// ReadHistory marks user's private chat with peer read up to maxID, as a
// Telegram app does when the chat is open; peer gets an
// updateReadHistoryOutbox.
func (s *Server) ReadHistory(user, peer int64, maxID int) {
	s.readHistory(context.Background(), user, peer, maxID)
}

// ReadUpTo is the latest message of user's private chat with peer that
// user read (0 for none).
func (s *Server) ReadUpTo(user, peer int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read[chatKey{user, peer}]
}

// SetTyping shows from typing (or stopping) in their private chat with to,
// as a Telegram app does; to gets an updateUserTyping.
func (s *Server) SetTyping(from, to int64, typing bool) {
	var action tg.SendMessageActionClass = &tg.SendMessageCancelAction{}
	if typing {
		action = &tg.SendMessageTypingAction{}
	}
	s.setTypingIn(from, to, action)
}

// TypingActions are the actions user set in their private chat with peer
// (messages.setTyping), in order.
func (s *Server) TypingActions(user, peer int64) []tg.SendMessageActionClass {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tg.SendMessageActionClass(nil), s.typing[chatKey{user, peer}]...)
}

func (s *Server) readHistoryRequest(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesReadHistoryRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	peer, err := s.privatePeer(r.Peer)
	if err != nil {
		return nil, err
	}
	pts := s.readHistory(c.req.RequestCtx, c.user, peer, r.MaxID)
	return &tg.MessagesAffectedMessages{Pts: pts, PtsCount: 1}, nil
}

// readHistory records the read, logs both sides' updates with their pts,
// pushes the other side's (and the reader's when the fake reads), and
// returns the reader's new pts.
func (s *Server) readHistory(ctx context.Context, user, peer int64, maxID int) int {
	s.mu.Lock()
	s.read[chatKey{user, peer}] = max(s.read[chatKey{user, peer}], maxID)
	reader := s.state[user]
	reader.pts++
	inbox := &tg.UpdateReadHistoryInbox{Peer: &tg.PeerUser{UserID: peer}, MaxID: maxID, Pts: reader.pts, PtsCount: 1}
	reader.log = append(reader.log, logged{pts: reader.pts, update: inbox})
	other := s.state[peer]
	other.pts++
	outbox := &tg.UpdateReadHistoryOutbox{Peer: &tg.PeerUser{UserID: user}, MaxID: maxID, Pts: other.pts, PtsCount: 1}
	other.log = append(other.log, logged{pts: other.pts, update: outbox})
	var pushes []func()
	if session, online := s.live[peer]; online {
		updates := s.updatesLocked(peer, outbox)
		pushes = append(pushes, func() { s.push(session, updates) })
	}
	if session, online := s.live[user]; online && ctx == context.Background() {
		updates := s.updatesLocked(user, inbox)
		pushes = append(pushes, func() { s.push(session, updates) })
	}
	pts := reader.pts
	s.mu.Unlock()
	for _, push := range pushes {
		push()
	}
	return pts
}

func (s *Server) setTypingRequest(c call) (bin.Encoder, error) {
	if c.user == 0 {
		return nil, errUnauthorized
	}
	var r tg.MessagesSetTypingRequest
	if err := r.Decode(c.req.Buf); err != nil {
		return nil, err
	}
	peer, err := s.privatePeer(r.Peer)
	if err != nil {
		return nil, err
	}
	s.setTypingIn(c.user, peer, r.Action)
	return boolResult(true), nil
}

// setTypingIn records from's action and pushes it to the other side.
func (s *Server) setTypingIn(from, to int64, action tg.SendMessageActionClass) {
	s.mu.Lock()
	key := chatKey{from, to}
	s.typing[key] = append(s.typing[key], action)
	session, online := s.live[to]
	var updates *tg.Updates
	if online {
		updates = s.updatesLocked(to, &tg.UpdateUserTyping{UserID: from, Action: action})
	}
	s.mu.Unlock()
	if online {
		s.push(session, updates)
	}
}

// privatePeer is the user a private chat's input peer names (with the
// access hash the caller was given).
func (s *Server) privatePeer(in tg.InputPeerClass) (int64, error) {
	peer, ok := in.(*tg.InputPeerUser)
	if !ok {
		return 0, tgerr.New(400, "PEER_ID_INVALID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[peer.UserID]; !ok || u.AccessHash != peer.AccessHash {
		return 0, tgerr.New(400, "PEER_ID_INVALID")
	}
	return peer.UserID, nil
}
