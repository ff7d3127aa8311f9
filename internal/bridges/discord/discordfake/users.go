package discordfake

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"

	"github.com/bwmarrin/discordgo"
)

// This file is user accounts logged in with their own token (what Discord's
// client does, and what its terms forbid for anything else): REST requests
// carry the token without the "Bot " prefix and act as the user; the
// gateway's READY for such a token names the user and lists their DMs and
// group DMs in private_channels, and the session gets the events of every
// guild (the fake makes every user a member of every guild) and of the
// private channels the user is in, whatever the intents.

// allIntents is what a user session gets: everything.
const allIntents = 1<<26 - 1

// codeMissingAccess is Discord's JSON code for a channel one cannot see.
const codeMissingAccess = 50001

// UserToken returns a token that logs in as the user (creating it once).
func (s *Server) UserToken(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for token, id := range s.userTokens {
		if id == userID {
			return token
		}
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		panic("discordfake: random token: " + err.Error())
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	s.userTokens[token] = userID
	return token
}

// DMBetween returns the DM channel between two users, creating it.
func (s *Server) DMBetween(a, b string) *discordgo.Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(s.dmBetweenLocked(a, b), a)
}

// AddGroupDM creates a group DM of the users, named name.
func (s *Server) AddGroupDM(name string, userIDs ...string) *discordgo.Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := &discordgo.Channel{ID: s.newID(), Type: discordgo.ChannelTypeGroupDM, Name: name, OwnerID: userIDs[0]}
	s.channels[ch.ID] = ch
	s.members[ch.ID] = slices.Clone(userIDs)
	return s.viewLocked(ch, userIDs[0])
}

// dmBetweenLocked finds or creates the DM of two users; nil if either is
// unknown.
func (s *Server) dmBetweenLocked(a, b string) *discordgo.Channel {
	if s.users[a] == nil || s.users[b] == nil {
		return nil
	}
	for id, members := range s.members {
		ch := s.channels[id]
		if ch.Type == discordgo.ChannelTypeDM && slices.Contains(members, a) && slices.Contains(members, b) {
			return ch
		}
	}
	ch := &discordgo.Channel{ID: s.newID(), Type: discordgo.ChannelTypeDM}
	s.channels[ch.ID] = ch
	s.members[ch.ID] = []string{a, b}
	return ch
}

// isPrivate reports whether a channel is a DM or group DM.
func isPrivate(ch *discordgo.Channel) bool {
	return ch.Type == discordgo.ChannelTypeDM || ch.Type == discordgo.ChannelTypeGroupDM
}

// canSeeLocked reports whether a user sees a channel: every guild channel,
// and the private channels they are in.
func (s *Server) canSeeLocked(userID string, ch *discordgo.Channel) bool {
	return !isPrivate(ch) || slices.Contains(s.members[ch.ID], userID)
}

// viewLocked is a channel as a user sees it: a private channel's
// recipients are its other members.
func (s *Server) viewLocked(ch *discordgo.Channel, viewerID string) *discordgo.Channel {
	if ch == nil || !isPrivate(ch) {
		return ch
	}
	view := *ch
	view.Recipients = nil
	for _, id := range s.members[ch.ID] {
		if id != viewerID {
			view.Recipients = append(view.Recipients, s.users[id])
		}
	}
	return &view
}

// privateChannelsLocked lists the private channels a user is in, as they
// see them.
func (s *Server) privateChannelsLocked(userID string) []*discordgo.Channel {
	out := []*discordgo.Channel{}
	for _, ch := range s.sortedChannelsLocked() {
		if isPrivate(ch) && slices.Contains(s.members[ch.ID], userID) {
			out = append(out, s.viewLocked(ch, userID))
		}
	}
	return out
}

// tokenUserLocked is who a token (an Authorization header or a gateway
// token) acts as: the bot for "Bot <token>" (or the bare bot token on the
// gateway), a user for their token; nil for none.
func (s *Server) tokenUserLocked(token string, gateway bool) *discordgo.User {
	if token == "Bot "+s.token || (gateway && token == s.token) {
		return s.bot
	}
	if id, ok := s.userTokens[token]; ok {
		return s.users[id]
	}
	return nil
}

type actorKey struct{}

// actor is who a REST request acts as (set by rest).
func actor(r *http.Request) *discordgo.User {
	u, _ := r.Context().Value(actorKey{}).(*discordgo.User)
	return u
}

func withActor(r *http.Request, u *discordgo.User) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), actorKey{}, u))
}
