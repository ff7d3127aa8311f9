package discordfake

import (
	"context"
	"fmt"
	"net/http"
)

// This file is a user's read state: POST
// /channels/{channel}/messages/{message}/ack (Discord's client API, for
// user accounts only; a bot has no read state) marks the channel read up
// to the message, and the user's gateway sessions get MESSAGE_ACK.

// codeBotsCannotUse is Discord's JSON code for a route bots may not use.
const codeBotsCannotUse = 20001

// ackKey is a user's read state in a channel.
type ackKey struct{ userID, channelID string }

func (s *Server) ackMessage(w http.ResponseWriter, r *http.Request) {
	user := actor(r)
	if user.Bot {
		writeError(w, http.StatusForbidden, codeBotsCannotUse, "Bots cannot use this endpoint")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.messageOr404(w, r)
	if m == nil {
		return
	}
	s.acks[ackKey{user.ID, ch.ID}] = m.ID
	s.notifyLocked()
	for _, sess := range s.sessions {
		if sess.userID == user.ID {
			s.sendLocked(sess, "MESSAGE_ACK", map[string]any{"channel_id": ch.ID, "message_id": m.ID, "version": 1})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": nil})
}

// WaitAck waits until the user has marked the channel read up to
// messageID (or a later message).
func (s *Server) WaitAck(ctx context.Context, userID, channelID, messageID string) error {
	for {
		s.mu.Lock()
		read := s.acks[ackKey{userID, channelID}]
		changed := s.changed
		s.mu.Unlock()
		if read != "" && compareIDs(read, messageID) >= 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to read %s in %s (read up to %q): %w", userID, messageID, channelID, read, ctx.Err())
		}
	}
}
