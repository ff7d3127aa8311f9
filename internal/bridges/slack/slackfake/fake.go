// Package slackfake is a fake Slack workspace for tests: it speaks Slack's
// real wire protocol on loopback, the form-encoded Web API methods the Slack
// bridge uses and Socket Mode over a websocket, so that the bridge runs
// against it with slack-go unchanged.
//
// Tests act as the people on the Slack side through the methods of
// [Server] (Post, Edit, Delete, React, UploadFile, ...) and read what the
// bridge did through Messages, Reactions and Files. Every change, whether
// made by a test or through the Web API, becomes an Events API envelope
// delivered over Socket Mode; an envelope stays queued until the client acks
// its envelope_id and is delivered again on the next connection, as Slack
// retries unacknowledged events.
package slackfake

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// The tokens the fake accepts, unless a test sets others on the Server.
const (
	DefaultBotToken = "xoxb-fake-bot-token"
	DefaultAppToken = "xapp-fake-app-token"
)

// MaxTextLength is the longest message text chat.postMessage and chat.update
// accept, as on Slack (msg_too_long beyond).
const MaxTextLength = 40000

// Server is a running fake Slack workspace.
type Server struct {
	// APIURL is the Web API base URL, ending in "/api/", for slack.OptionAPIURL.
	APIURL string

	srv *httptest.Server

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change
	botToken  string
	appToken  string
	team      slack.TeamInfo
	botUserID string
	botID     string
	users     map[string]*slack.User
	channels  map[string]*channel
	files     map[string]*storedFile
	uploads   map[string]*pendingUpload
	nextID    int
	lastTS    time.Time
	limits    map[string]rateLimit
	failFiles int // downloads to answer with HTTP 500
	calls     map[string]int
	tickets   map[string]bool
	socket    socketState
}

type channel struct {
	info     slack.Channel
	members  []string
	messages []*slack.Msg // in ts order
}

type storedFile struct {
	info slack.File
	data []byte
}

type pendingUpload struct {
	name   string
	length int
	data   []byte
	done   bool
}

type rateLimit struct {
	times      int
	retryAfter int
}

// New starts a fake workspace with one bot user (the app the bridge logs in
// as) and closes it when the test ends.
func New(t interface{ Cleanup(func()) }) *Server {
	s := &Server{
		changed:  make(chan struct{}),
		botToken: DefaultBotToken,
		appToken: DefaultAppToken,
		team:     slack.TeamInfo{ID: "T0FAKE", Name: "Fake Workspace", Domain: "fake"},
		users:    map[string]*slack.User{},
		channels: map[string]*channel{},
		files:    map[string]*storedFile{},
		uploads:  map[string]*pendingUpload{},
		limits:   map[string]rateLimit{},
		calls:    map[string]int{},
		tickets:  map[string]bool{},
	}
	s.socket.init()
	s.botUserID = s.addUserLocked("matrixbridge", "Matrix Bridge", true)
	s.botID = "B0BRIDGE"
	mux := http.NewServeMux()
	mux.HandleFunc("/api/{method}", s.serveAPI)
	mux.HandleFunc("POST /upload/{file}", s.serveUpload)
	mux.HandleFunc("GET /files/{file}/{name}", s.serveDownload)
	mux.HandleFunc("GET /avatars/{user}", s.serveAvatar)
	mux.HandleFunc("GET /link/", s.serveSocket)
	s.srv = httptest.NewServer(mux)
	s.APIURL = s.srv.URL + "/api/"
	t.Cleanup(s.Close)
	return s
}

// Close closes the socket connections and stops the server.
func (s *Server) Close() {
	s.socket.closeAll()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// BotToken and AppToken are the tokens the bridge logs in with.
func (s *Server) BotToken() string { return s.botToken }

// AppToken is the app-level token apps.connections.open accepts.
func (s *Server) AppToken() string { return s.appToken }

// TeamID is the workspace's ID.
func (s *Server) TeamID() string { return s.team.ID }

// BotUserID is the user ID of the bridge's bot user.
func (s *Server) BotUserID() string { return s.botUserID }

// AddUser adds a person to the workspace and returns their user ID.
func (s *Server) AddUser(name, realName string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addUserLocked(name, realName, false)
}

func (s *Server) addUserLocked(name, realName string, bot bool) string {
	id := s.newIDLocked("U")
	u := &slack.User{
		ID: id, TeamID: s.team.ID, Name: name, RealName: realName, IsBot: bot,
		Profile: slack.UserProfile{
			RealName: realName, DisplayName: realName, Team: s.team.ID,
			Image512: s.srvURL() + "/avatars/" + id, AvatarHash: "h" + id,
		},
	}
	s.users[id] = u
	return id
}

// srvURL is empty while New is still building the server; avatars set then
// (the bot's) are filled in lazily by users.info.
func (s *Server) srvURL() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.URL
}

// AddChannel creates a public channel with the given members (the bot is
// added when it is among them) and returns its ID.
func (s *Server) AddChannel(name string, members ...string) string {
	return s.addConversation(slack.Channel{
		IsChannel:         true,
		GroupConversation: slack.GroupConversation{Name: name, Conversation: slack.Conversation{NameNormalized: name}},
	}, members)
}

// AddDM opens a direct message conversation between user and the bot.
func (s *Server) AddDM(user string) string {
	return s.addConversation(slack.Channel{
		GroupConversation: slack.GroupConversation{Conversation: slack.Conversation{IsIM: true, IsPrivate: true, User: user}},
	}, []string{user, s.botUserID})
}

func (s *Server) addConversation(info slack.Channel, members []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := "C"
	if info.IsIM {
		prefix = "D"
	}
	info.ID = s.newIDLocked(prefix)
	info.Created = slack.JSONTime(time.Now().Unix())
	info.IsOpen = true
	s.channels[info.ID] = &channel{info: info, members: slices.Clone(members)}
	if slices.Contains(members, s.botUserID) && !info.IsIM {
		s.emitLocked(map[string]any{
			"type": "member_joined_channel", "user": s.botUserID, "channel": info.ID,
			"channel_type": channelType(&info), "team": s.team.ID, "event_ts": s.nextTSLocked(),
		})
	}
	s.notifyLocked()
	return info.ID
}

// PostOptions are the optional parts of a message typed on the Slack side.
type PostOptions struct {
	ThreadTS string       // reply in the thread of this message
	Files    []slack.File // set by UploadFile
}

// Post types text as user in a channel and returns the message's ts.
func (s *Server) Post(channelID, user, text string) string {
	ts, err := s.PostWith(channelID, user, text, PostOptions{})
	if err != nil {
		panic(err)
	}
	return ts
}

// Reply types text as user in the thread of threadTS.
func (s *Server) Reply(channelID, user, threadTS, text string) string {
	ts, err := s.PostWith(channelID, user, text, PostOptions{ThreadTS: threadTS})
	if err != nil {
		panic(err)
	}
	return ts
}

// PostWith types a message with options and returns its ts.
func (s *Server) PostWith(channelID, user, text string, opts PostOptions) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := slack.Msg{Type: "message", User: user, Text: text, ThreadTimestamp: opts.ThreadTS, Files: opts.Files}
	if len(opts.Files) > 0 {
		msg.Upload = true
		msg.SubType = "file_share"
	}
	if errCode := s.postLocked(channelID, &msg); errCode != "" {
		return "", fmt.Errorf("slackfake: post: %s", errCode)
	}
	return msg.Timestamp, nil
}

// postLocked stores msg in a channel (filling ts, channel, team) and emits its
// message event; it answers a Slack error code or "".
func (s *Server) postLocked(channelID string, msg *slack.Msg) string {
	ch := s.channels[channelID]
	if ch == nil {
		return "channel_not_found"
	}
	if msg.ThreadTimestamp != "" && ch.find(msg.ThreadTimestamp) == nil {
		return "thread_not_found"
	}
	msg.Timestamp = s.nextTSLocked()
	msg.Channel = channelID
	msg.Team = s.team.ID
	ch.messages = append(ch.messages, msg)
	for _, f := range msg.Files {
		if stored := s.files[f.ID]; stored != nil {
			share := slack.ShareFileInfo{Ts: msg.Timestamp, ThreadTs: msg.ThreadTimestamp, ChannelName: ch.info.Name, TeamID: s.team.ID}
			shares := &stored.info.Shares.Public
			if ch.info.IsPrivate {
				shares = &stored.info.Shares.Private
			}
			if *shares == nil {
				*shares = map[string][]slack.ShareFileInfo{}
			}
			(*shares)[channelID] = append((*shares)[channelID], share)
		}
	}
	evt := messageJSON(msg)
	evt["channel_type"] = channelType(&ch.info)
	evt["event_ts"] = msg.Timestamp
	s.emitLocked(evt)
	s.notifyLocked()
	return ""
}

// Edit changes the text of a message as its author would.
func (s *Server) Edit(channelID, ts, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.editLocked(channelID, ts, text, ""); code != "" {
		panic("slackfake: edit: " + code)
	}
}

func (s *Server) editLocked(channelID, ts, text, asUser string) string {
	ch := s.channels[channelID]
	if ch == nil {
		return "channel_not_found"
	}
	msg := ch.find(ts)
	if msg == nil {
		return "message_not_found"
	}
	if asUser != "" && msg.User != asUser {
		return "cant_update_message"
	}
	prev := *msg
	msg.Text = text
	msg.Edited = &slack.Edited{User: msg.User, Timestamp: s.nextTSLocked()}
	s.emitLocked(map[string]any{
		"type": "message", "subtype": "message_changed", "hidden": true, "channel": channelID,
		"channel_type": channelType(&ch.info), "ts": msg.Edited.Timestamp, "event_ts": msg.Edited.Timestamp,
		"message": messageJSON(msg), "previous_message": messageJSON(&prev),
	})
	s.notifyLocked()
	return ""
}

// Delete deletes a message as its author would.
func (s *Server) Delete(channelID, ts string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.deleteLocked(channelID, ts, ""); code != "" {
		panic("slackfake: delete: " + code)
	}
}

func (s *Server) deleteLocked(channelID, ts, asUser string) string {
	ch := s.channels[channelID]
	if ch == nil {
		return "channel_not_found"
	}
	i := slices.IndexFunc(ch.messages, func(m *slack.Msg) bool { return m.Timestamp == ts })
	if i < 0 {
		return "message_not_found"
	}
	prev := ch.messages[i]
	if asUser != "" && prev.User != asUser {
		return "cant_delete_message"
	}
	ch.messages = slices.Delete(ch.messages, i, i+1)
	eventTS := s.nextTSLocked()
	s.emitLocked(map[string]any{
		"type": "message", "subtype": "message_deleted", "hidden": true, "channel": channelID,
		"channel_type": channelType(&ch.info), "ts": eventTS, "event_ts": eventTS,
		"deleted_ts": ts, "previous_message": messageJSON(prev),
	})
	s.notifyLocked()
	return ""
}

// React adds the reaction name (a Slack emoji shortcode without colons) to
// a message as user.
func (s *Server) React(channelID, ts, user, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.reactLocked(channelID, ts, user, name, true); code != "" {
		panic("slackfake: react: " + code)
	}
}

// Unreact removes user's reaction name from a message.
func (s *Server) Unreact(channelID, ts, user, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.reactLocked(channelID, ts, user, name, false); code != "" {
		panic("slackfake: unreact: " + code)
	}
}

func (s *Server) reactLocked(channelID, ts, user, name string, add bool) string {
	ch := s.channels[channelID]
	if ch == nil {
		return "channel_not_found"
	}
	msg := ch.find(ts)
	if msg == nil {
		return "message_not_found"
	}
	if !validEmojiName(name) {
		return "invalid_name"
	}
	i := slices.IndexFunc(msg.Reactions, func(r slack.ItemReaction) bool { return r.Name == name })
	if add {
		if i < 0 {
			msg.Reactions = append(msg.Reactions, slack.ItemReaction{Name: name})
			i = len(msg.Reactions) - 1
		}
		r := &msg.Reactions[i]
		if slices.Contains(r.Users, user) {
			return "already_reacted"
		}
		r.Users = append(r.Users, user)
		r.Count = len(r.Users)
	} else {
		if i < 0 || !slices.Contains(msg.Reactions[i].Users, user) {
			return "no_reaction"
		}
		r := &msg.Reactions[i]
		r.Users = slices.DeleteFunc(r.Users, func(u string) bool { return u == user })
		r.Count = len(r.Users)
		if r.Count == 0 {
			msg.Reactions = slices.Delete(msg.Reactions, i, i+1)
		}
	}
	typ := "reaction_added"
	if !add {
		typ = "reaction_removed"
	}
	s.emitLocked(map[string]any{
		"type": typ, "user": user, "reaction": name, "item_user": msg.User,
		"item": map[string]any{"type": "message", "channel": channelID, "ts": ts}, "event_ts": s.nextTSLocked(),
	})
	s.notifyLocked()
	return ""
}

func validEmojiName(name string) bool {
	if name == "" || len(name) > 100 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_+-:'", r)) {
			return false
		}
	}
	return true
}

// UploadFile shares a file in a channel as user, with an optional comment,
// and returns the ts of the message that carries it.
func (s *Server) UploadFile(channelID, user, name, mimetype string, data []byte, comment string) string {
	s.mu.Lock()
	f := s.storeFileLocked(user, name, name, mimetype, data)
	s.mu.Unlock()
	ts, err := s.PostWith(channelID, user, comment, PostOptions{Files: []slack.File{f}})
	if err != nil {
		panic(err)
	}
	return ts
}

func (s *Server) storeFileLocked(user, name, title, mimetype string, data []byte) slack.File {
	id := s.newIDLocked("F")
	f := slack.File{
		ID: id, Name: name, Title: title, Mimetype: mimetype, User: user, Size: len(data),
		Created: slack.JSONTime(time.Now().Unix()), Timestamp: slack.JSONTime(time.Now().Unix()),
		URLPrivate:         s.srv.URL + "/files/" + id + "/" + name,
		URLPrivateDownload: s.srv.URL + "/files/" + id + "/" + name,
		Filetype:           strings.TrimPrefix(mimeExtension(name), "."),
	}
	s.files[id] = &storedFile{info: f, data: slices.Clone(data)}
	return f
}

func mimeExtension(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// Messages returns a copy of a channel's messages, oldest first, thread
// replies included.
func (s *Server) Messages(channelID string) []slack.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[channelID]
	if ch == nil {
		return nil
	}
	out := make([]slack.Msg, len(ch.messages))
	for i, m := range ch.messages {
		out[i] = *m
		out[i].Reactions = slices.Clone(m.Reactions)
	}
	return out
}

// FileData returns the content of a stored file.
func (s *Server) FileData(fileID string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.files[fileID]; f != nil {
		return slices.Clone(f.data)
	}
	return nil
}

// RateLimit makes the next times calls of a Web API method answer HTTP 429
// with error "ratelimited" and Retry-After: retryAfter seconds, as Slack does
// when an app exceeds the method's tier.
func (s *Server) RateLimit(method string, times, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits[method] = rateLimit{times: times, retryAfter: retryAfter}
}

// FailDownloads makes the next n file downloads answer HTTP 500, as a
// failing file server would; 0 ends that.
func (s *Server) FailDownloads(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failFiles = n
}

// Calls returns how many times a Web API method was called, rate-limited
// answers included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Wait blocks until cond (called with the workspace locked against changes)
// holds or ctx ends.
func (s *Server) Wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) newIDLocked(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s%08d", prefix, s.nextID)
}

// nextTSLocked returns a fresh message timestamp ("seconds.micros"), strictly
// increasing as Slack's are within a channel.
func (s *Server) nextTSLocked() string {
	now := time.Now()
	if !now.After(s.lastTS) {
		now = s.lastTS.Add(time.Microsecond)
	}
	s.lastTS = now
	return fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
}

func (ch *channel) find(ts string) *slack.Msg {
	for _, m := range ch.messages {
		if m.Timestamp == ts {
			return m
		}
	}
	return nil
}

func channelType(info *slack.Channel) string {
	switch {
	case info.IsIM:
		return "im"
	case info.IsMpIM:
		return "mpim"
	case info.IsPrivate:
		return "group"
	default:
		return "channel"
	}
}

// messageJSON is a message as Slack sends it in events and history.
func messageJSON(m *slack.Msg) map[string]any {
	out := map[string]any{"type": "message", "ts": m.Timestamp, "text": m.Text, "team": m.Team}
	if m.Channel != "" {
		out["channel"] = m.Channel
	}
	if m.User != "" {
		out["user"] = m.User
	}
	if m.BotID != "" {
		out["bot_id"] = m.BotID
	}
	if m.Username != "" {
		out["username"] = m.Username
	}
	if m.SubType != "" {
		out["subtype"] = m.SubType
	}
	if m.ThreadTimestamp != "" {
		out["thread_ts"] = m.ThreadTimestamp
	}
	if m.Edited != nil {
		out["edited"] = map[string]any{"user": m.Edited.User, "ts": m.Edited.Timestamp}
	}
	if len(m.Files) > 0 {
		out["files"] = m.Files
		out["upload"] = m.Upload
	}
	return out
}
