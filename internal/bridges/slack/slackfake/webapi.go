package slackfake

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/slack-go/slack"
)

// maxRequestBody bounds a Web API request (form or JSON) and an upload.
const maxRequestBody = 64 << 20

// serveAPI answers POST/GET https://slack.com/api/{method}: the token comes
// from the form's token field or the Authorization: Bearer header, the
// answer is JSON with "ok" and, on failure, "error", as on Slack.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		writeError(w, "invalid_form_data")
		return
	}
	token := r.Form.Get("token")
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && token == "" {
		token = auth
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	if limit, ok := s.limits[method]; ok && limit.times > 0 {
		limit.times--
		s.limits[method] = limit
		w.Header().Set("Retry-After", strconv.Itoa(limit.retryAfter))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "ratelimited"})
		return
	}
	handler, ok := s.methods()[method]
	if !ok {
		writeError(w, "unknown_method")
		return
	}
	wantToken := s.botToken
	if method == "apps.connections.open" {
		wantToken = s.appToken
	}
	switch {
	case token == "":
		writeError(w, "not_authed")
		return
	case token != wantToken:
		writeError(w, "invalid_auth")
		return
	}
	answer, errCode := handler(r.Form)
	if errCode != "" {
		writeError(w, errCode)
		return
	}
	answer["ok"] = true
	writeJSON(w, answer)
}

type apiMethod func(form map[string][]string) (answer map[string]any, errCode string)

func (s *Server) methods() map[string]apiMethod {
	return map[string]apiMethod{
		"auth.test":                    s.authTest,
		"apps.connections.open":        s.connectionsOpen,
		"conversations.list":           s.conversationsList,
		"conversations.info":           s.conversationsInfo,
		"conversations.members":        s.conversationsMembers,
		"conversations.history":        s.conversationsHistory,
		"users.info":                   s.usersInfo,
		"chat.postMessage":             s.chatPostMessage,
		"chat.update":                  s.chatUpdate,
		"chat.delete":                  s.chatDelete,
		"reactions.add":                s.reactionsAdd,
		"reactions.remove":             s.reactionsRemove,
		"files.getUploadURLExternal":   s.filesGetUploadURL,
		"files.completeUploadExternal": s.filesCompleteUpload,
		"files.info":                   s.filesInfo,
	}
}

func first(form map[string][]string, key string) string {
	if v := form[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *Server) authTest(map[string][]string) (map[string]any, string) {
	return map[string]any{
		"url": "https://" + s.team.Domain + ".slack.com/", "team": s.team.Name, "user": s.users[s.botUserID].Name,
		"team_id": s.team.ID, "user_id": s.botUserID, "bot_id": s.botID, "is_enterprise_install": false,
	}, ""
}

func (s *Server) connectionsOpen(map[string][]string) (map[string]any, string) {
	ticket := s.newIDLocked("ticket-")
	s.tickets[ticket] = true
	wsURL := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/link/?ticket=" + ticket
	return map[string]any{"url": wsURL}, ""
}

func (s *Server) channelJSON(ch *channel) slack.Channel {
	info := ch.info
	info.IsMember = slices.Contains(ch.members, s.botUserID)
	info.NumMembers = len(ch.members)
	return info
}

func (s *Server) conversationsList(form map[string][]string) (map[string]any, string) {
	types := strings.Split(first(form, "types"), ",")
	if first(form, "types") == "" {
		types = []string{"public_channel"}
	}
	var ids []string
	for id, ch := range s.channels {
		if slices.Contains(types, conversationTypeName(&ch.info)) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	limit, _ := strconv.Atoi(first(form, "limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	start := 0
	if cursor := first(form, "cursor"); cursor != "" {
		start = slices.IndexFunc(ids, func(id string) bool { return id >= cursor })
		if start < 0 {
			start = len(ids)
		}
	}
	end := min(start+limit, len(ids))
	out := []slack.Channel{}
	for _, id := range ids[start:end] {
		out = append(out, s.channelJSON(s.channels[id]))
	}
	next := ""
	if end < len(ids) {
		next = ids[end]
	}
	return map[string]any{"channels": out, "response_metadata": map[string]any{"next_cursor": next}}, ""
}

func conversationTypeName(info *slack.Channel) string {
	switch {
	case info.IsIM:
		return "im"
	case info.IsMpIM:
		return "mpim"
	case info.IsPrivate:
		return "private_channel"
	default:
		return "public_channel"
	}
}

func (s *Server) conversationsInfo(form map[string][]string) (map[string]any, string) {
	ch := s.channels[first(form, "channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	return map[string]any{"channel": s.channelJSON(ch)}, ""
}

func (s *Server) conversationsMembers(form map[string][]string) (map[string]any, string) {
	ch := s.channels[first(form, "channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	return map[string]any{"members": slices.Clone(ch.members), "response_metadata": map[string]any{"next_cursor": ""}}, ""
}

// conversationsHistory lists a channel's top-level messages newest first,
// between oldest and latest (exclusive unless inclusive=true).
func (s *Server) conversationsHistory(form map[string][]string) (map[string]any, string) {
	ch := s.channels[first(form, "channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	oldest, latest := first(form, "oldest"), first(form, "latest")
	inclusive := first(form, "inclusive") == "true" || first(form, "inclusive") == "1"
	limit, _ := strconv.Atoi(first(form, "limit"))
	if limit <= 0 || limit > 999 {
		limit = 100
	}
	var out []map[string]any
	for i := len(ch.messages) - 1; i >= 0 && len(out) < limit; i-- {
		m := ch.messages[i]
		if m.ThreadTimestamp != "" && m.ThreadTimestamp != m.Timestamp {
			continue
		}
		if !tsInRange(m.Timestamp, oldest, latest, inclusive) {
			continue
		}
		out = append(out, messageJSON(m))
	}
	return map[string]any{"messages": out, "has_more": false}, ""
}

func tsInRange(ts, oldest, latest string, inclusive bool) bool {
	t, _ := strconv.ParseFloat(ts, 64)
	if oldest != "" {
		o, _ := strconv.ParseFloat(oldest, 64)
		if t < o || t == o && !inclusive {
			return false
		}
	}
	if latest != "" {
		l, _ := strconv.ParseFloat(latest, 64)
		if t > l || t == l && !inclusive {
			return false
		}
	}
	return true
}

func (s *Server) usersInfo(form map[string][]string) (map[string]any, string) {
	u := s.users[first(form, "user")]
	if u == nil {
		return nil, "user_not_found"
	}
	if u.Profile.Image512 == "" {
		u.Profile.Image512 = s.srv.URL + "/avatars/" + u.ID
	}
	return map[string]any{"user": u}, ""
}

// chatPostMessage posts as the bot; username (with chat:write.customize)
// shows another name on the message, as the bridge does for Matrix users.
func (s *Server) chatPostMessage(form map[string][]string) (map[string]any, string) {
	text := first(form, "text")
	switch {
	case text == "" && first(form, "blocks") == "" && first(form, "attachments") == "":
		return nil, "no_text"
	case len([]rune(text)) > MaxTextLength:
		return nil, "msg_too_long"
	}
	ch := s.channels[first(form, "channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	if !slices.Contains(ch.members, s.botUserID) {
		return nil, "not_in_channel"
	}
	msg := &slack.Msg{
		Type: "message", User: s.botUserID, BotID: s.botID, Text: text,
		Username: first(form, "username"), ThreadTimestamp: first(form, "thread_ts"),
	}
	if code := s.postLocked(ch.info.ID, msg); code != "" {
		return nil, code
	}
	return map[string]any{"channel": ch.info.ID, "ts": msg.Timestamp, "message": messageJSON(msg)}, ""
}

func (s *Server) chatUpdate(form map[string][]string) (map[string]any, string) {
	channelID, ts, text := first(form, "channel"), first(form, "ts"), first(form, "text")
	if len([]rune(text)) > MaxTextLength {
		return nil, "msg_too_long"
	}
	if code := s.editLocked(channelID, ts, text, s.botUserID); code != "" {
		return nil, code
	}
	return map[string]any{"channel": channelID, "ts": ts, "text": text}, ""
}

func (s *Server) chatDelete(form map[string][]string) (map[string]any, string) {
	channelID, ts := first(form, "channel"), first(form, "ts")
	if code := s.deleteLocked(channelID, ts, s.botUserID); code != "" {
		return nil, code
	}
	return map[string]any{"channel": channelID, "ts": ts}, ""
}

func (s *Server) reactionsAdd(form map[string][]string) (map[string]any, string) {
	code := s.reactLocked(first(form, "channel"), first(form, "timestamp"), s.botUserID, first(form, "name"), true)
	if code != "" {
		return nil, code
	}
	return map[string]any{}, ""
}

func (s *Server) reactionsRemove(form map[string][]string) (map[string]any, string) {
	code := s.reactLocked(first(form, "channel"), first(form, "timestamp"), s.botUserID, first(form, "name"), false)
	if code != "" {
		return nil, code
	}
	return map[string]any{}, ""
}

// filesGetUploadURLExternal reserves a file ID and an upload URL for length
// bytes, the first step of Slack's upload flow.
func (s *Server) filesGetUploadURL(form map[string][]string) (map[string]any, string) {
	name := first(form, "filename")
	length, err := strconv.Atoi(first(form, "length"))
	switch {
	case name == "":
		return nil, "invalid_arguments"
	case err != nil || length <= 0:
		return nil, "invalid_arguments"
	case length > maxRequestBody:
		return nil, "file_too_large"
	}
	id := s.newIDLocked("F")
	s.uploads[id] = &pendingUpload{name: name, length: length}
	return map[string]any{"upload_url": s.srv.URL + "/upload/" + id, "file_id": id}, ""
}

// serveUpload receives the bytes of a reserved upload (multipart field
// "file") and answers "OK - <length>" as files.slack.com does.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("file")
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	var data []byte
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType == "multipart/form-data" {
		file, _, err := r.FormFile("file")
		if err != nil {
			http.Error(w, "missing file", http.StatusBadRequest)
			return
		}
		data, err = io.ReadAll(file)
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
	} else {
		var err error
		if data, err = io.ReadAll(r.Body); err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	up := s.uploads[id]
	if up == nil || up.done {
		http.Error(w, "unknown upload", http.StatusNotFound)
		return
	}
	if len(data) != up.length {
		http.Error(w, "length mismatch", http.StatusBadRequest)
		return
	}
	up.data, up.done = data, true
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "OK - "+strconv.Itoa(len(data)))
}

// filesCompleteUpload turns uploaded bytes into files and, with a channel,
// shares them there in one message (with initial_comment as its text).
func (s *Server) filesCompleteUpload(form map[string][]string) (map[string]any, string) {
	var entries []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(first(form, "files")), &entries); err != nil || len(entries) == 0 {
		return nil, "invalid_arguments"
	}
	var files []slack.File
	for _, e := range entries {
		up := s.uploads[e.ID]
		if up == nil || !up.done {
			return nil, "file_not_found"
		}
		title := e.Title
		if title == "" {
			title = up.name
		}
		f := slack.File{
			ID: e.ID, Name: up.name, Title: title, Mimetype: mime.TypeByExtension(mimeExtension(up.name)),
			User: s.botUserID, Size: len(up.data),
			URLPrivate:         s.srv.URL + "/files/" + e.ID + "/" + up.name,
			URLPrivateDownload: s.srv.URL + "/files/" + e.ID + "/" + up.name,
		}
		if f.Mimetype == "" {
			f.Mimetype = "application/octet-stream"
		}
		s.files[e.ID] = &storedFile{info: f, data: up.data}
		delete(s.uploads, e.ID)
		files = append(files, f)
	}
	channelID := first(form, "channel_id")
	if channelID == "" {
		channelID = first(form, "channels")
	}
	if channelID != "" {
		ch := s.channels[channelID]
		if ch == nil {
			return nil, "channel_not_found"
		}
		if !slices.Contains(ch.members, s.botUserID) {
			return nil, "not_in_channel"
		}
		msg := &slack.Msg{
			Type: "message", SubType: "file_share", User: s.botUserID, BotID: s.botID, Upload: true,
			Text: first(form, "initial_comment"), ThreadTimestamp: first(form, "thread_ts"), Files: files,
		}
		if code := s.postLocked(channelID, msg); code != "" {
			return nil, code
		}
	}
	summaries := make([]map[string]any, len(files))
	for i, f := range files {
		summaries[i] = map[string]any{"id": f.ID, "title": f.Title}
	}
	return map[string]any{"files": summaries}, ""
}

func (s *Server) filesInfo(form map[string][]string) (map[string]any, string) {
	f := s.files[first(form, "file")]
	if f == nil {
		return nil, "file_not_found"
	}
	return map[string]any{"file": f.info, "comments": []any{}, "paging": map[string]any{"count": 0, "total": 0, "page": 1, "pages": 1}}, ""
}

// serveDownload serves url_private: only with the bot token, as Slack does.
func (s *Server) serveDownload(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.files[r.PathValue("file")]
	token := s.botToken
	fail := s.failFiles > 0
	if fail {
		s.failFiles--
	}
	s.mu.Unlock()
	if fail {
		http.Error(w, "file server error", http.StatusInternalServerError)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, "not authorized", http.StatusForbidden)
		return
	}
	if f == nil || f.info.Name != r.PathValue("name") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.info.Mimetype)
	_, _ = w.Write(f.data)
}

// serveAvatar serves a user's profile picture: a 1x1 PNG unique to the user.
func (s *Server) serveAvatar(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	_, ok := s.users[r.PathValue("user")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(onePixelPNG)
}

// onePixelPNG is a valid 1x1 transparent PNG.
var onePixelPNG = []byte{
	0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
	0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
	0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
	0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
	0x42, 0x60, 0x82,
}

func writeError(w http.ResponseWriter, code string) {
	writeJSON(w, map[string]any{"ok": false, "error": code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
