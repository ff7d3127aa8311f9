package discordfake

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bwmarrin/discordgo"
)

// discordEpoch is the start of Discord's snowflake clock (2015-01-01 UTC) in ms.
const discordEpoch = 1420070400000

// Intents the gateway checks, as Discord numbers them.
const (
	intentGuilds         = 1 << 0
	intentGuildMessages  = 1 << 9
	intentDirectMessages = 1 << 12
	intentMessageContent = 1 << 15
)

// Server is a running fake Discord. Create one with Start.
type Server struct {
	http  *httptest.Server
	token string
	bot   *discordgo.User

	// HeartbeatInterval is the interval HELLO asks clients to heartbeat at.
	heartbeatInterval time.Duration

	mu       sync.Mutex
	lastID   int64
	users    map[string]*discordgo.User
	guilds   []*discordgo.Guild
	channels map[string]*discordgo.Channel
	messages map[string][]*discordgo.Message // by channel ID, oldest first
	files    map[string]attachmentFile       // by CDN path
	// reactionUsers is, per message ID and emoji API name, who reacted.
	reactionUsers map[string]map[string]*reactionState
	sessions      map[string]*gatewaySession
	changed       chan struct{} // closed and replaced on every change of messages

	limits    rateLimits
	forced429 int // answers left that are forced to be 429s
	// attachmentsGone makes the CDN answer 404 for every attachment.
	attachmentsGone bool
	served429       int
	// readyWithoutUser is how many READY events are left to send with a
	// null user.
	readyWithoutUser int
	requests         []string // "METHOD path" of every REST request, for assertions

	webhooks map[string]*discordgo.Webhook // by ID
	// webhookAvatars is the avatar_url each webhook message was sent with.
	webhookAvatars map[string]string
	// webhooksDenied makes the bot lack the Manage Webhooks permission.
	webhooksDenied bool
	// typers is, per channel, who has typed there.
	typers map[string][]string
	// userTokens maps the tokens of users (not bots) to their IDs.
	userTokens map[string]string
	// members is, per DM and group DM, who is in it.
	members map[string][]string
	// acks is the message each user has read up to in each channel.
	acks map[ackKey]string
	// gatewayDown makes the gateway refuse every connection.
	gatewayDown bool
}

type attachmentFile struct {
	contentType string
	data        []byte
}

// Options configure a fake Discord.
type Options struct {
	// BotToken is the token the bot authenticates with (without "Bot ").
	// Empty means a random one (see Token).
	BotToken string
	// BotName is the bot user's name. Empty means "matrixbridge".
	BotName string
	// HeartbeatInterval defaults to 41.25s, Discord's usual value.
	HeartbeatInterval time.Duration
}

// Start runs a fake Discord on loopback until the test ends.
func Start(t interface{ Cleanup(func()) }, opts Options) *Server {
	if opts.BotToken == "" {
		// A token of its own, so that no client of another fake (on a port
		// since reused) can log in here.
		opts.BotToken = "fake-bot-token-" + strconv.FormatUint(rand.Uint64(), 36)
	}
	if opts.BotName == "" {
		opts.BotName = "matrixbridge"
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 41250 * time.Millisecond
	}
	s := &Server{
		token:             opts.BotToken,
		heartbeatInterval: opts.HeartbeatInterval,
		users:             map[string]*discordgo.User{},
		channels:          map[string]*discordgo.Channel{},
		messages:          map[string][]*discordgo.Message{},
		files:             map[string]attachmentFile{},
		reactionUsers:     map[string]map[string]*reactionState{},
		sessions:          map[string]*gatewaySession{},
		webhooks:          map[string]*discordgo.Webhook{},
		webhookAvatars:    map[string]string{},
		typers:            map[string][]string{},
		userTokens:        map[string]string{},
		members:           map[string][]string{},
		acks:              map[ackKey]string{},
		changed:           make(chan struct{}),
		limits:            rateLimits{limit: 50, window: time.Second, buckets: map[string]*bucket{}},
	}
	s.bot = s.AddUser(opts.BotName)
	s.bot.Bot = true
	s.http = httptest.NewServer(s.routes())
	t.Cleanup(s.Close)
	return s
}

// URL is the server's base URL, "http://127.0.0.1:port/": what discordgo's
// EndpointDiscord (and EndpointCDN) point at.
func (s *Server) URL() string { return s.http.URL + "/" }

// Token is the bot token the fake accepts.
func (s *Server) Token() string { return s.token }

// Bot is the bot user.
func (s *Server) Bot() *discordgo.User { return s.bot }

// Close drops every gateway connection and stops the server.
func (s *Server) Close() {
	s.DropGatewayConnections()
	s.http.CloseClientConnections()
	s.http.Close()
}

// newID returns a fresh snowflake, increasing with time as Discord's do.
// The caller holds s.mu.
func (s *Server) newID() string {
	id := (time.Now().UnixMilli() - discordEpoch) << 22
	if id <= s.lastID {
		id = s.lastID + 1
	}
	s.lastID = id
	return strconv.FormatInt(id, 10)
}

// AddUser creates a Discord user.
func (s *Server) AddUser(name string) *discordgo.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &discordgo.User{ID: s.newID(), Username: name, GlobalName: name, Discriminator: "0"}
	s.users[u.ID] = u
	return u
}

// AddGuild creates a guild the bot is a member of, with no channels.
// Connected gateway sessions get a GUILD_CREATE.
func (s *Server) AddGuild(name string) *discordgo.Guild {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &discordgo.Guild{ID: s.newID(), Name: name, OwnerID: s.bot.ID}
	s.guilds = append(s.guilds, g)
	s.dispatchLocked("GUILD_CREATE", s.guildCreateLocked(g), intentGuilds)
	return g
}

// AddChannel creates a text channel in a guild; sessions get CHANNEL_CREATE.
func (s *Server) AddChannel(guildID, name string) *discordgo.Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := &discordgo.Channel{ID: s.newID(), GuildID: guildID, Name: name, Type: discordgo.ChannelTypeGuildText}
	s.channels[ch.ID] = ch
	s.dispatchLocked("CHANNEL_CREATE", ch, intentGuilds)
	return ch
}

// DMChannel returns the DM channel between the bot and a user, creating it.
func (s *Server) DMChannel(userID string) *discordgo.Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dmChannelLocked(userID)
}

func (s *Server) dmChannelLocked(userID string) *discordgo.Channel {
	return s.viewLocked(s.dmBetweenLocked(s.bot.ID, userID), s.bot.ID)
}

// guildCreateLocked is a guild as GUILD_CREATE carries it: with its channels
// and active threads.
func (s *Server) guildCreateLocked(g *discordgo.Guild) *discordgo.Guild {
	full := *g
	full.Channels, full.Threads = nil, nil
	for _, ch := range s.sortedChannelsLocked() {
		if ch.GuildID != g.ID {
			continue
		}
		if ch.IsThread() {
			full.Threads = append(full.Threads, ch)
		} else {
			full.Channels = append(full.Channels, ch)
		}
	}
	full.MemberCount = len(s.users)
	return &full
}

func (s *Server) sortedChannelsLocked() []*discordgo.Channel {
	chans := make([]*discordgo.Channel, 0, len(s.channels))
	for _, ch := range s.channels {
		chans = append(chans, ch)
	}
	slices.SortFunc(chans, func(a, b *discordgo.Channel) int { return compareIDs(a.ID, b.ID) })
	return chans
}

// compareIDs orders snowflakes numerically.
func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// notifyLocked wakes everyone waiting in WaitMessage.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Messages returns a copy of a channel's messages, oldest first.
func (s *Server) Messages(channelID string) []*discordgo.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*discordgo.Message, 0, len(s.messages[channelID]))
	for _, m := range s.messages[channelID] {
		out = append(out, cloneMessage(m))
	}
	return out
}

// WaitMessage waits until a message in the channel satisfies match and
// returns a copy of it.
func (s *Server) WaitMessage(ctx context.Context, channelID string, match func(*discordgo.Message) bool) (*discordgo.Message, error) {
	for {
		s.mu.Lock()
		for _, m := range s.messages[channelID] {
			if match(m) {
				c := cloneMessage(m)
				s.mu.Unlock()
				return c, nil
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a message in channel %s: %w", channelID, ctx.Err())
		}
	}
}

// WaitMessageGone waits until a message is no longer in the channel.
func (s *Server) WaitMessageGone(ctx context.Context, channelID, messageID string) error {
	for {
		s.mu.Lock()
		gone := s.findMessageLocked(channelID, messageID) == nil
		changed := s.changed
		s.mu.Unlock()
		if gone {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for message %s to go: %w", messageID, ctx.Err())
		}
	}
}

// Attachment returns the bytes and content type stored at an attachment URL
// the fake handed out.
func (s *Server) Attachment(url string) ([]byte, string, bool) {
	path := strings.TrimPrefix(url, s.http.URL)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[path]
	return f.data, f.contentType, ok
}

// ForceRateLimit makes the next n REST requests answer 429 with a short
// retry_after, whatever their bucket says.
func (s *Server) ForceRateLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forced429 = n
}

// FailAttachmentDownloads makes the CDN answer 404 for attachments (as
// for a deleted or expired one) while on is true.
func (s *Server) FailAttachmentDownloads(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attachmentsGone = on
}

// SetRateLimit sets how many requests each bucket allows per window.
func (s *Server) SetRateLimit(limit int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits.limit, s.limits.window = limit, window
	s.limits.buckets = map[string]*bucket{}
}

// RateLimited is how many 429 answers the fake has given.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served429
}

// Requests lists "METHOD path" of every REST request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func cloneMessage(m *discordgo.Message) *discordgo.Message {
	raw, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("discordfake: marshal message: %v", err))
	}
	var c discordgo.Message
	if err := json.Unmarshal(raw, &c); err != nil {
		panic(fmt.Sprintf("discordfake: unmarshal message: %v", err))
	}
	return &c
}

// routes is the REST API, the CDN and the gateway endpoint.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" /api/{version}"+path, s.rest(path, h))
	}
	api("GET /gateway", s.getGateway)
	api("GET /gateway/bot", s.getGateway)
	api("GET /users/{user}", s.getUser)
	api("GET /users/@me/guilds", s.getMyGuilds)
	api("POST /users/@me/channels", s.createDM)
	api("GET /guilds/{guild}", s.getGuild)
	api("GET /guilds/{guild}/channels", s.getGuildChannels)
	api("GET /guilds/{guild}/threads/active", s.getActiveThreads)
	api("GET /channels/{channel}", s.getChannel)
	api("GET /channels/{channel}/messages", s.listMessages)
	api("GET /channels/{channel}/messages/{message}", s.getMessage)
	api("POST /channels/{channel}/messages", s.createMessage)
	api("PATCH /channels/{channel}/messages/{message}", s.editMessage)
	api("DELETE /channels/{channel}/messages/{message}", s.deleteMessage)
	api("PUT /channels/{channel}/messages/{message}/reactions/{emoji}/@me", s.addReaction)
	api("DELETE /channels/{channel}/messages/{message}/reactions/{emoji}/@me", s.removeReaction)
	api("POST /channels/{channel}/messages/{message}/threads", s.startThread)
	api("POST /channels/{channel}/typing", s.triggerTyping)
	api("POST /channels/{channel}/messages/{message}/ack", s.ackMessage)
	api("GET /channels/{channel}/webhooks", s.listWebhooks)
	api("POST /channels/{channel}/webhooks", s.createWebhook)
	// Executing a webhook and changing its messages authenticate with the
	// webhook's token in the path, not the bot's.
	webhook := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" /api/{version}"+path, s.webhookRoute(path, h))
	}
	webhook("POST /webhooks/{webhook}/{token}", s.executeWebhook)
	webhook("PATCH /webhooks/{webhook}/{token}/messages/{message}", s.editWebhookMessage)
	webhook("DELETE /webhooks/{webhook}/{token}/messages/{message}", s.deleteWebhookMessage)
	mux.HandleFunc("GET /attachments/", s.getCDNFile)
	mux.HandleFunc("GET /avatars/", s.getCDNFile)
	// The gateway lives at the root, as wss://gateway.discord.gg/?v=..&encoding=json does.
	mux.HandleFunc("GET /{$}", s.serveGateway)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, 0, "404: Not Found")
	})
	return mux
}

// rest wraps a REST handler with the version check, authentication and
// rate limiting, as Discord applies them to every route.
func (s *Server) rest(route string, h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("version") {
		case "v9", "v10":
		default:
			writeError(w, http.StatusNotFound, 0, "404: Not Found")
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path)
		user := s.tokenUserLocked(r.Header.Get("Authorization"), false)
		s.mu.Unlock()
		if route != "/gateway" && user == nil {
			writeError(w, http.StatusUnauthorized, 0, "401: Unauthorized")
			return
		}
		r = withActor(r, user)
		if !s.admit(w, r.Method+" "+route+" "+majorParameter(r)) {
			return
		}
		h(w, r)
	}
}

func majorParameter(r *http.Request) string {
	if ch := r.PathValue("channel"); ch != "" {
		return ch
	}
	if hook := r.PathValue("webhook"); hook != "" {
		return hook
	}
	return r.PathValue("guild")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The client went away; nothing more to tell it.
		return
	}
}

// writeError answers with Discord's error body: {"message": ..., "code": ...}.
func writeError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{"message": message, "code": code})
}

// JSON error codes Discord uses.
const (
	codeUnknownChannel     = 10003
	codeUnknownMessage     = 10008
	codeUnknownUser        = 10013
	codeUnknownEmoji       = 10014
	codeEmptyMessage       = 50006
	codeCannotEditOthers   = 50005
	codeUnknownWebhook     = 10015
	codeMissingPermissions = 50013
	codeBadWebhookToken    = 50027
	codeInvalidFormBody    = 50035
	codeThreadExists       = 160004
)
