package discordfake

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"
)

// Limits Discord puts on what a bot sends.
const (
	maxContentLength = 2000
	maxUploadBytes   = 25 << 20
	maxAttachments   = 10
)

func (s *Server) getGateway(w http.ResponseWriter, r *http.Request) {
	wsURL := "ws" + strings.TrimPrefix(s.http.URL, "http")
	writeJSON(w, http.StatusOK, map[string]any{
		"url":    wsURL,
		"shards": 1,
		"session_start_limit": map[string]int{
			"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1,
		},
	})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("user")
	if id == "@me" {
		id = actor(r).ID
	}
	s.mu.Lock()
	u := s.users[id]
	s.mu.Unlock()
	if u == nil {
		writeError(w, http.StatusNotFound, codeUnknownUser, "Unknown User")
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (s *Server) getMyGuilds(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, 0, len(s.guilds))
	for _, g := range s.guilds {
		out = append(out, map[string]any{"id": g.ID, "name": g.Name, "owner": true, "permissions": "8"})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createDM(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RecipientID string `json:"recipient_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.RecipientID == "" {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
		return
	}
	s.mu.Lock()
	me := actor(r).ID
	ch := s.viewLocked(s.dmBetweenLocked(me, body.RecipientID), me)
	s.mu.Unlock()
	if ch == nil {
		writeError(w, http.StatusBadRequest, codeUnknownUser, "Unknown User")
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func (s *Server) guildByID(id string) *discordgo.Guild {
	for _, g := range s.guilds {
		if g.ID == id {
			return g
		}
	}
	return nil
}

func (s *Server) getGuild(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.guildByID(r.PathValue("guild"))
	if g == nil {
		writeError(w, http.StatusNotFound, 10004, "Unknown Guild")
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (s *Server) getGuildChannels(w http.ResponseWriter, r *http.Request) {
	s.listGuildChannels(w, r, false)
}

func (s *Server) getActiveThreads(w http.ResponseWriter, r *http.Request) {
	s.listGuildChannels(w, r, true)
}

func (s *Server) listGuildChannels(w http.ResponseWriter, r *http.Request, threads bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	guildID := r.PathValue("guild")
	if s.guildByID(guildID) == nil {
		writeError(w, http.StatusNotFound, 10004, "Unknown Guild")
		return
	}
	out := []*discordgo.Channel{}
	for _, ch := range s.sortedChannelsLocked() {
		if ch.GuildID == guildID && ch.IsThread() == threads {
			out = append(out, ch)
		}
	}
	if threads {
		writeJSON(w, http.StatusOK, map[string]any{"threads": out, "members": []any{}})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// channelOr404 looks up the request's channel, answering 404 if unknown
// and 403 if the request's user is not in it (a private channel of
// others). The caller holds s.mu.
func (s *Server) channelOr404(w http.ResponseWriter, r *http.Request) *discordgo.Channel {
	ch := s.channels[r.PathValue("channel")]
	switch {
	case ch == nil:
		writeError(w, http.StatusNotFound, codeUnknownChannel, "Unknown Channel")
		return nil
	case actor(r) != nil && !s.canSeeLocked(actor(r).ID, ch):
		writeError(w, http.StatusForbidden, codeMissingAccess, "Missing Access")
		return nil
	}
	return ch
}

// messageOr404 looks up the request's message, answering 404 if unknown.
// The caller holds s.mu.
func (s *Server) messageOr404(w http.ResponseWriter, r *http.Request) (*discordgo.Channel, *discordgo.Message) {
	ch := s.channelOr404(w, r)
	if ch == nil {
		return nil, nil
	}
	m := s.findMessageLocked(ch.ID, r.PathValue("message"))
	if m == nil {
		writeError(w, http.StatusNotFound, codeUnknownMessage, "Unknown Message")
	}
	return ch, m
}

func (s *Server) findMessageLocked(channelID, messageID string) *discordgo.Message {
	for _, m := range s.messages[channelID] {
		if m.ID == messageID {
			return m
		}
	}
	return nil
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := s.channelOr404(w, r); ch != nil {
		writeJSON(w, http.StatusOK, s.viewLocked(ch, actor(r).ID))
	}
}

// listMessages answers GET /channels/{id}/messages: newest first, limited
// (1..100, default 50), after or before a message ID.
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
			return
		}
		limit = n
	}
	after, before := q.Get("after"), q.Get("before")
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channelOr404(w, r)
	if ch == nil {
		return
	}
	var picked []*discordgo.Message
	all := s.messages[ch.ID]
	if after != "" {
		// The oldest `limit` messages after the anchor, returned newest first.
		for _, m := range all {
			if compareIDs(m.ID, after) > 0 && len(picked) < limit {
				picked = append(picked, m)
			}
		}
		slices.Reverse(picked)
	} else {
		for i := len(all) - 1; i >= 0 && len(picked) < limit; i-- {
			if before == "" || compareIDs(all[i].ID, before) < 0 {
				picked = append(picked, all[i])
			}
		}
	}
	if picked == nil {
		picked = []*discordgo.Message{}
	}
	writeJSON(w, http.StatusOK, picked)
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, m := s.messageOr404(w, r); m != nil {
		writeJSON(w, http.StatusOK, m)
	}
}

// upload is one file of a multipart message create.
type upload struct {
	name, contentType string
	data              []byte
}

// createMessage answers POST /channels/{id}/messages, as JSON or as
// multipart/form-data with payload_json and files[n] parts.
func (s *Server) createMessage(w http.ResponseWriter, r *http.Request) {
	payload, files, err := readMessagePayload(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channelOr404(w, r)
	if ch == nil {
		return
	}
	m, status, code, msg := s.postLocked(ch, actor(r), "", payload.Content, payload.Reference, files)
	if m == nil {
		writeError(w, status, code, msg)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

type messagePayload struct {
	Content   string                      `json:"content"`
	Reference *discordgo.MessageReference `json:"message_reference"`
	// Username and AvatarURL are a webhook message's author.
	Username  string `json:"username"`
	AvatarURL string `json:"avatar_url"`
}

func readMessagePayload(r *http.Request) (messagePayload, []upload, error) {
	var p messagePayload
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return p, nil, fmt.Errorf("content type: %w", err)
	}
	if mediaType != "multipart/form-data" {
		err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p)
		return p, nil, err
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return p, nil, err
	}
	var files []upload
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return p, files, nil
		} else if err != nil {
			return p, nil, err
		}
		data, err := io.ReadAll(io.LimitReader(part, maxUploadBytes+1))
		if err != nil {
			return p, nil, err
		}
		switch name := part.FormName(); {
		case name == "payload_json":
			if err := json.Unmarshal(data, &p); err != nil {
				return p, nil, fmt.Errorf("payload_json: %w", err)
			}
		case strings.HasPrefix(name, "files["):
			if len(data) > maxUploadBytes {
				return p, nil, fmt.Errorf("%s: file too large", name)
			}
			files = append(files, upload{name: part.FileName(), contentType: part.Header.Get("Content-Type"), data: data})
		}
	}
}

// postLocked stores a new message and dispatches MESSAGE_CREATE; webhookID
// is the webhook that sent it, if one did. On a refusal it returns nil and
// the HTTP status, JSON code and message.
func (s *Server) postLocked(ch *discordgo.Channel, author *discordgo.User, webhookID, content string, ref *discordgo.MessageReference, files []upload) (*discordgo.Message, int, int, string) {
	if content == "" && len(files) == 0 {
		return nil, http.StatusBadRequest, codeEmptyMessage, "Cannot send an empty message"
	}
	if len([]rune(content)) > maxContentLength {
		return nil, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: content: Must be 2000 or fewer in length."
	}
	if len(files) > maxAttachments {
		return nil, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: files: Must be 10 or fewer in length."
	}
	m := &discordgo.Message{
		ID: s.newID(), ChannelID: ch.ID, GuildID: ch.GuildID, Content: content,
		Timestamp: time.Now().UTC(), Author: author, Type: discordgo.MessageTypeDefault,
		Attachments: []*discordgo.MessageAttachment{}, Embeds: []*discordgo.MessageEmbed{},
		Mentions: []*discordgo.User{}, MentionRoles: []string{}, WebhookID: webhookID,
	}
	if ref != nil && ref.MessageID != "" {
		refChannel := ref.ChannelID
		if refChannel == "" {
			refChannel = ch.ID
		}
		target := s.findMessageLocked(refChannel, ref.MessageID)
		if target == nil {
			return nil, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: message_reference: Unknown message"
		}
		m.Type = discordgo.MessageTypeReply
		m.MessageReference = &discordgo.MessageReference{MessageID: target.ID, ChannelID: refChannel, GuildID: ch.GuildID}
		m.ReferencedMessage = cloneMessage(target)
	}
	for _, f := range files {
		m.Attachments = append(m.Attachments, s.storeAttachmentLocked(ch.ID, f))
	}
	s.messages[ch.ID] = append(s.messages[ch.ID], m)
	s.notifyLocked()
	s.dispatchMessageLocked("MESSAGE_CREATE", ch, m)
	return m, 0, 0, ""
}

func (s *Server) storeAttachmentLocked(channelID string, f upload) *discordgo.MessageAttachment {
	id := s.newID()
	name := f.name
	if name == "" {
		name = "file"
	}
	path := "/attachments/" + channelID + "/" + id + "/" + url.PathEscape(name)
	ct := f.contentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	s.files[path] = attachmentFile{contentType: ct, data: f.data}
	return &discordgo.MessageAttachment{
		ID: id, Filename: name, ContentType: ct, Size: len(f.data),
		URL: s.http.URL + path, ProxyURL: s.http.URL + path,
	}
}

// getCDNFile serves attachments and avatars.
func (s *Server) getCDNFile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	s.mu.Lock()
	f, ok := s.files[path]
	gone := s.attachmentsGone && strings.HasPrefix(path, "/attachments/")
	s.mu.Unlock()
	if !ok || gone {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	if _, err := w.Write(f.data); err != nil {
		return
	}
}

func (s *Server) editMessage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Content *string `json:"content"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.messageOr404(w, r)
	if m == nil {
		return
	}
	if m.Author.ID != actor(r).ID {
		writeError(w, http.StatusForbidden, codeCannotEditOthers, "Cannot edit a message authored by another user")
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

func (s *Server) editLocked(ch *discordgo.Channel, m *discordgo.Message, content string) (int, int, string) {
	if content == "" && len(m.Attachments) == 0 {
		return http.StatusBadRequest, codeEmptyMessage, "Cannot send an empty message"
	}
	if len([]rune(content)) > maxContentLength {
		return http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: content: Must be 2000 or fewer in length."
	}
	now := time.Now().UTC()
	m.Content, m.EditedTimestamp = content, &now
	s.notifyLocked()
	s.dispatchMessageLocked("MESSAGE_UPDATE", ch, m)
	return 0, 0, ""
}

func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.messageOr404(w, r)
	if m == nil {
		return
	}
	s.deleteLocked(ch, m.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteLocked(ch *discordgo.Channel, messageID string) {
	s.messages[ch.ID] = slices.DeleteFunc(s.messages[ch.ID], func(m *discordgo.Message) bool { return m.ID == messageID })
	s.notifyLocked()
	s.dispatchChannelLocked("MESSAGE_DELETE", map[string]string{"id": messageID, "channel_id": ch.ID, "guild_id": ch.GuildID}, messageIntent(ch), ch)
}

func (s *Server) addReaction(w http.ResponseWriter, r *http.Request) {
	s.reactionRoute(w, r, true)
}

func (s *Server) removeReaction(w http.ResponseWriter, r *http.Request) {
	s.reactionRoute(w, r, false)
}

func (s *Server) reactionRoute(w http.ResponseWriter, r *http.Request, add bool) {
	emoji, err := parseEmoji(r.PathValue("emoji"))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnknownEmoji, "Unknown Emoji")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.messageOr404(w, r)
	if m == nil {
		return
	}
	s.reactLocked(ch, m, actor(r).ID, emoji, add)
	w.WriteHeader(http.StatusNoContent)
}

// parseEmoji reads a reaction path segment: a unicode emoji, or name:id for
// a custom one.
func parseEmoji(segment string) (discordgo.Emoji, error) {
	if segment == "" || strings.ContainsAny(segment, " /") {
		return discordgo.Emoji{}, fmt.Errorf("bad emoji %q", segment)
	}
	if name, id, ok := strings.Cut(segment, ":"); ok {
		if name == "" || id == "" {
			return discordgo.Emoji{}, fmt.Errorf("bad custom emoji %q", segment)
		}
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return discordgo.Emoji{}, fmt.Errorf("bad custom emoji id %q", id)
		}
		return discordgo.Emoji{Name: name, ID: id}, nil
	}
	for _, r := range segment {
		if r < 0x80 {
			return discordgo.Emoji{}, fmt.Errorf("not an emoji: %q", segment)
		}
	}
	return discordgo.Emoji{Name: segment}, nil
}

// reactLocked adds or removes userID's reaction and dispatches the event;
// adding a reaction twice or removing an absent one changes nothing.
func (s *Server) reactLocked(ch *discordgo.Channel, m *discordgo.Message, userID string, emoji discordgo.Emoji, add bool) {
	state := s.reactionLocked(m.ID, emoji)
	has := slices.Contains(state.users, userID)
	switch {
	case add && !has:
		state.users = append(state.users, userID)
	case !add && has:
		state.users = slices.DeleteFunc(state.users, func(u string) bool { return u == userID })
	default:
		return
	}
	m.Reactions = reactionCounts(s.reactionUsers[m.ID], s.bot.ID)
	s.notifyLocked()
	event := "MESSAGE_REACTION_ADD"
	if !add {
		event = "MESSAGE_REACTION_REMOVE"
	}
	s.dispatchChannelLocked(event, &discordgo.MessageReaction{
		UserID: userID, MessageID: m.ID, ChannelID: ch.ID, GuildID: ch.GuildID, Emoji: emoji,
	}, reactionIntent(ch), ch)
}

func (s *Server) startThread(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.Name == "" || len(body.Name) > 100 {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body: name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, m := s.messageOr404(w, r)
	if m == nil {
		return
	}
	thread, ok := s.startThreadLocked(ch, m, actor(r).ID, body.Name)
	if !ok {
		writeError(w, http.StatusBadRequest, codeThreadExists, "A thread has already been created for this message")
		return
	}
	writeJSON(w, http.StatusCreated, thread)
}

// startThreadLocked opens a public thread on a message: a channel whose ID
// is the message's, as on Discord.
func (s *Server) startThreadLocked(parent *discordgo.Channel, m *discordgo.Message, ownerID, name string) (*discordgo.Channel, bool) {
	if s.channels[m.ID] != nil || parent.IsThread() || parent.Type == discordgo.ChannelTypeDM {
		return nil, false
	}
	thread := &discordgo.Channel{
		ID: m.ID, GuildID: parent.GuildID, ParentID: parent.ID, Name: name, OwnerID: ownerID,
		Type:           discordgo.ChannelTypeGuildPublicThread,
		ThreadMetadata: &discordgo.ThreadMetadata{AutoArchiveDuration: 1440},
	}
	s.channels[thread.ID] = thread
	m.Thread = thread
	s.notifyLocked()
	s.dispatchLocked("THREAD_CREATE", &discordgo.ThreadCreate{Channel: thread, NewlyCreated: true}, intentGuilds)
	return thread, true
}
