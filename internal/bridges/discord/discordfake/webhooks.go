package discordfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/bwmarrin/discordgo"
)

// This file is Discord's channel webhooks: created and listed by a bot with
// the Manage Webhooks permission, executed (and their messages edited and
// deleted) with the webhook's token in the path, as
// https://discord.com/developers/docs/resources/webhook documents them.

// maxWebhookName is Discord's limit on a webhook's (and a webhook
// message's author's) name.
const maxWebhookName = 80

// DenyManageWebhooks takes the Manage Webhooks permission from the bot (or
// gives it back): listing and creating webhooks answer 403 Missing
// Permissions while denied.
func (s *Server) DenyManageWebhooks(denied bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhooksDenied = denied
}

// AddWebhook adds a webhook to a channel as its owner (a user, not the
// bot) would through Discord's settings, as integrations get theirs; its
// messages are posted with its ID and token like any webhook's.
func (s *Server) AddWebhook(channelID, ownerID, name string) *discordgo.Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[channelID]
	token := make([]byte, 32)
	rand.Read(token)
	hook := &discordgo.Webhook{
		ID: s.newID(), Type: discordgo.WebhookTypeIncoming, GuildID: ch.GuildID, ChannelID: ch.ID,
		User: s.users[ownerID], Name: name, Token: hex.EncodeToString(token),
	}
	s.webhooks[hook.ID] = hook
	c := *hook
	return &c
}

// Webhooks lists the webhooks of a channel.
func (s *Server) Webhooks(channelID string) []*discordgo.Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*discordgo.Webhook
	for _, hook := range s.webhooks {
		if hook.ChannelID == channelID {
			c := *hook
			out = append(out, &c)
		}
	}
	return out
}

// WebhookAvatarURL is the avatar_url a webhook message was sent with ("" if
// none, or if the message is not a webhook's).
func (s *Server) WebhookAvatarURL(messageID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhookAvatars[messageID]
}

// webhookRoute wraps a webhook token route with the version check and rate
// limiting; the token in the path is checked by the handler.
func (s *Server) webhookRoute(route string, h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("version") {
		case "v9", "v10":
		default:
			writeError(w, http.StatusNotFound, 0, "404: Not Found")
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+route)
		s.mu.Unlock()
		if !s.admit(w, r.Method+" "+route+" "+majorParameter(r)) {
			return
		}
		h(w, r)
	}
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.webhookChannelLocked(w, r)
	if ch == nil {
		return
	}
	out := []*discordgo.Webhook{}
	for _, hook := range s.webhooks {
		if hook.ChannelID == ch.ID {
			out = append(out, hook)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// webhookChannelLocked is the request's channel, if it is a guild text
// channel whose webhooks the bot may manage; otherwise it answers the
// error and returns nil.
func (s *Server) webhookChannelLocked(w http.ResponseWriter, r *http.Request) *discordgo.Channel {
	ch := s.channelOr404(w, r)
	switch {
	case ch == nil:
		return nil
	case ch.GuildID == "" || ch.IsThread():
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: channel_id: not a guild text channel")
		return nil
	case s.webhooksDenied:
		writeError(w, http.StatusForbidden, codeMissingPermissions, "Missing Permissions")
		return nil
	}
	return ch
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || !validWebhookName(body.Name) {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.webhookChannelLocked(w, r)
	if ch == nil {
		return
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		writeError(w, http.StatusInternalServerError, 0, "500: Internal Server Error")
		return
	}
	hook := &discordgo.Webhook{
		ID: s.newID(), Type: discordgo.WebhookTypeIncoming, GuildID: ch.GuildID, ChannelID: ch.ID,
		User: actor(r), Name: body.Name, Token: hex.EncodeToString(token), ApplicationID: s.bot.ID,
	}
	s.webhooks[hook.ID] = hook
	writeJSON(w, http.StatusOK, hook)
}

// validWebhookName applies Discord's rules to a webhook's or a webhook
// message author's name: 1 to 80 characters, and neither "clyde" nor
// "discord" in it.
func validWebhookName(name string) bool {
	n := len([]rune(name))
	lower := strings.ToLower(name)
	return n >= 1 && n <= maxWebhookName && !strings.Contains(lower, "clyde") && !strings.Contains(lower, "discord")
}

// webhookLocked is the request's webhook if its token matches; otherwise it
// answers the error and returns nil.
func (s *Server) webhookLocked(w http.ResponseWriter, r *http.Request) *discordgo.Webhook {
	hook := s.webhooks[r.PathValue("webhook")]
	switch {
	case hook == nil:
		writeError(w, http.StatusNotFound, codeUnknownWebhook, "Unknown Webhook")
		return nil
	case hook.Token != r.PathValue("token"):
		writeError(w, http.StatusUnauthorized, codeBadWebhookToken, "Invalid Webhook Token")
		return nil
	}
	return hook
}

// webhookTargetLocked is where a webhook request acts: the webhook's
// channel, or the thread of it that ?thread_id= names.
func (s *Server) webhookTargetLocked(w http.ResponseWriter, r *http.Request, hook *discordgo.Webhook) *discordgo.Channel {
	threadID := r.URL.Query().Get("thread_id")
	if threadID == "" {
		return s.channels[hook.ChannelID]
	}
	thread := s.channels[threadID]
	if thread == nil || !thread.IsThread() || thread.ParentID != hook.ChannelID {
		writeError(w, http.StatusBadRequest, codeUnknownChannel, "Unknown Channel")
		return nil
	}
	return thread
}

// executeWebhook answers POST /webhooks/{id}/{token}: a message in the
// webhook's channel (or thread) by an author with the given username (the
// webhook's name if none), as JSON or multipart with files; with wait=true
// the message, otherwise 204.
func (s *Server) executeWebhook(w http.ResponseWriter, r *http.Request) {
	payload, files, err := readMessagePayload(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: "+err.Error())
		return
	}
	if payload.Username != "" && !validWebhookName(payload.Username) {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: username")
		return
	}
	if payload.Reference != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: webhooks cannot reply")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hook := s.webhookLocked(w, r)
	if hook == nil {
		return
	}
	ch := s.webhookTargetLocked(w, r, hook)
	if ch == nil {
		return
	}
	name := payload.Username
	if name == "" {
		name = hook.Name
	}
	author := &discordgo.User{ID: hook.ID, Username: name, Discriminator: "0000", Bot: true}
	m, status, code, msg := s.postLocked(ch, author, hook.ID, payload.Content, nil, files)
	if m == nil {
		writeError(w, status, code, msg)
		return
	}
	if payload.AvatarURL != "" {
		s.webhookAvatars[m.ID] = payload.AvatarURL
	}
	if r.URL.Query().Get("wait") != "true" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// webhookMessageLocked is the message a PATCH or DELETE of
// /webhooks/{id}/{token}/messages/{message} acts on: one the webhook sent
// in its channel or the given thread.
func (s *Server) webhookMessageLocked(w http.ResponseWriter, r *http.Request) (*discordgo.Channel, *discordgo.Message) {
	hook := s.webhookLocked(w, r)
	if hook == nil {
		return nil, nil
	}
	ch := s.webhookTargetLocked(w, r, hook)
	if ch == nil {
		return nil, nil
	}
	m := s.findMessageLocked(ch.ID, r.PathValue("message"))
	if m == nil || m.WebhookID != hook.ID {
		writeError(w, http.StatusNotFound, codeUnknownMessage, "Unknown Message")
		return nil, nil
	}
	return ch, m
}

func (s *Server) editWebhookMessage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Content *string `json:"content"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.webhookMessageLocked(w, r)
	if m == nil {
		return
	}
	if body.Content != nil {
		if status, code, msg := s.editLocked(ch, m, *body.Content); status != 0 {
			writeError(w, status, code, msg)
			return
		}
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) deleteWebhookMessage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.webhookMessageLocked(w, r)
	if m == nil {
		return
	}
	s.deleteLocked(ch, m.ID)
	w.WriteHeader(http.StatusNoContent)
}
