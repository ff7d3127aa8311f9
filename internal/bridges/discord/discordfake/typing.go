package discordfake

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Typing intents, as Discord numbers them.
const (
	intentGuildMessageTyping  = 1 << 11
	intentDirectMessageTyping = 1 << 14
)

// typingStart is a TYPING_START dispatch.
type typingStart struct {
	ChannelID string `json:"channel_id"`
	GuildID   string `json:"guild_id,omitempty"`
	UserID    string `json:"user_id"`
	Timestamp int64  `json:"timestamp"`
}

// triggerTyping answers POST /channels/{id}/typing: 204, and TYPING_START
// for the bot.
func (s *Server) triggerTyping(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channelOr404(w, r)
	if ch == nil {
		return
	}
	s.typingLocked(ch.ID, actor(r).ID)
	w.WriteHeader(http.StatusNoContent)
}

// Type shows userID typing in a channel, as Discord's client does while
// they write: sessions with the typing intents get TYPING_START.
func (s *Server) Type(channelID, userID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.channels[channelID] == nil || s.users[userID] == nil {
		return fmt.Errorf("type: unknown channel %q or user %q", channelID, userID)
	}
	s.typingLocked(channelID, userID)
	return nil
}

func (s *Server) typingLocked(channelID, userID string) {
	ch := s.channels[channelID]
	if !slices.Contains(s.typers[channelID], userID) {
		s.typers[channelID] = append(s.typers[channelID], userID)
	}
	s.notifyLocked()
	intent := intentGuildMessageTyping
	if isPrivate(ch) {
		intent = intentDirectMessageTyping
	}
	s.dispatchChannelLocked("TYPING_START", typingStart{ChannelID: ch.ID, GuildID: ch.GuildID, UserID: userID, Timestamp: time.Now().Unix()}, intent, ch)
}

// WaitTyping waits until userID has typed in a channel.
func (s *Server) WaitTyping(ctx context.Context, channelID, userID string) error {
	for {
		s.mu.Lock()
		typed := slices.Contains(s.typers[channelID], userID)
		changed := s.changed
		s.mu.Unlock()
		if typed {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to type in %s: %w", userID, channelID, ctx.Err())
		}
	}
}
