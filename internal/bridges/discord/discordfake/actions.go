package discordfake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/bwmarrin/discordgo"
)

// PostOption adds to a message a test posts as a Discord user.
type PostOption func(*postOptions)

type postOptions struct {
	reference *discordgo.MessageReference
	files     []upload
}

// SetAvatar gives a user an avatar (a PNG), served on the CDN at
// avatars/{user}/{hash}.png as Discord does.
func (s *Server) SetAvatar(userID string, png []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u == nil {
		return fmt.Errorf("set avatar: unknown user %q", userID)
	}
	sum := sha256.Sum256(png)
	u.Avatar = hex.EncodeToString(sum[:16])
	s.files["/avatars/"+u.ID+"/"+u.Avatar+".png"] = attachmentFile{contentType: "image/png", data: png}
	return nil
}

// ReplyTo makes the message a reply to messageID (in the same channel).
func ReplyTo(messageID string) PostOption {
	return func(o *postOptions) { o.reference = &discordgo.MessageReference{MessageID: messageID} }
}

// WithAttachment attaches a file to the message.
func WithAttachment(name, contentType string, data []byte) PostOption {
	return func(o *postOptions) {
		o.files = append(o.files, upload{name: name, contentType: contentType, data: data})
	}
}

// Post sends a message as the user authorID, as if typed in Discord's client.
func (s *Server) Post(channelID, authorID, content string, opts ...PostOption) (*discordgo.Message, error) {
	var o postOptions
	for _, opt := range opts {
		opt(&o)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, author := s.channels[channelID], s.users[authorID]
	if ch == nil || author == nil {
		return nil, fmt.Errorf("post: unknown channel %q or user %q", channelID, authorID)
	}
	m, _, _, msg := s.postLocked(ch, author, "", content, o.reference, o.files)
	if m == nil {
		return nil, fmt.Errorf("post: %s", msg)
	}
	return cloneMessage(m), nil
}

// Edit changes a message's content, as its author would.
func (s *Server) Edit(channelID, messageID, content string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.channels[channelID], s.findMessageLocked(channelID, messageID)
	if ch == nil || m == nil {
		return fmt.Errorf("edit: unknown message %s in channel %s", messageID, channelID)
	}
	if _, _, msg := s.editLocked(ch, m, content); msg != "" {
		return fmt.Errorf("edit: %s", msg)
	}
	return nil
}

// Delete removes a message, as its author or a moderator would.
func (s *Server) Delete(channelID, messageID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[channelID]
	if ch == nil || s.findMessageLocked(channelID, messageID) == nil {
		return fmt.Errorf("delete: unknown message %s in channel %s", messageID, channelID)
	}
	s.deleteLocked(ch, messageID)
	return nil
}

// React adds userID's reaction: a unicode emoji, or "name:id" for a custom one.
func (s *Server) React(channelID, messageID, userID, emoji string) error {
	return s.setReaction(channelID, messageID, userID, emoji, true)
}

// Unreact removes userID's reaction.
func (s *Server) Unreact(channelID, messageID, userID, emoji string) error {
	return s.setReaction(channelID, messageID, userID, emoji, false)
}

func (s *Server) setReaction(channelID, messageID, userID, emoji string, add bool) error {
	e, err := parseEmoji(emoji)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.channels[channelID], s.findMessageLocked(channelID, messageID)
	if ch == nil || m == nil || s.users[userID] == nil {
		return fmt.Errorf("react: unknown message %s in channel %s or user %s", messageID, channelID, userID)
	}
	s.reactLocked(ch, m, userID, e, add)
	return nil
}

// Reactions maps each emoji's API name on a message to who reacted with it.
func (s *Server) Reactions(messageID string) map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for key, st := range s.reactionUsers[messageID] {
		if len(st.users) > 0 {
			out[key] = slices.Clone(st.users)
		}
	}
	return out
}

// StartThread opens a thread on a message as userID; the thread's channel ID
// is the message's ID.
func (s *Server) StartThread(channelID, messageID, userID, name string) (*discordgo.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.channels[channelID], s.findMessageLocked(channelID, messageID)
	if ch == nil || m == nil {
		return nil, fmt.Errorf("start thread: unknown message %s in channel %s", messageID, channelID)
	}
	thread, ok := s.startThreadLocked(ch, m, userID, name)
	if !ok {
		return nil, fmt.Errorf("start thread: message %s already has a thread or cannot have one", messageID)
	}
	return thread, nil
}

type reactionState struct {
	emoji discordgo.Emoji
	users []string
}

// reactionLocked returns the reaction state of one emoji on a message,
// creating it.
func (s *Server) reactionLocked(messageID string, emoji discordgo.Emoji) *reactionState {
	byEmoji := s.reactionUsers[messageID]
	if byEmoji == nil {
		byEmoji = map[string]*reactionState{}
		s.reactionUsers[messageID] = byEmoji
	}
	st := byEmoji[emoji.APIName()]
	if st == nil {
		st = &reactionState{emoji: emoji}
		byEmoji[emoji.APIName()] = st
	}
	return st
}

// reactionCounts is a message's reactions field.
func reactionCounts(byEmoji map[string]*reactionState, botID string) []*discordgo.MessageReactions {
	var out []*discordgo.MessageReactions
	for _, key := range slices.Sorted(maps.Keys(byEmoji)) {
		st := byEmoji[key]
		if len(st.users) == 0 {
			continue
		}
		emoji := st.emoji
		out = append(out, &discordgo.MessageReactions{Count: len(st.users), Me: slices.Contains(st.users, botID), Emoji: &emoji})
	}
	return out
}
