package discordfake

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"
)

// Gateway opcodes.
const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opResume         = 6
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatACK   = 11
)

// Gateway close codes.
const (
	closeNotAuthenticated     = 4003
	closeAuthenticationFailed = 4004
	closeAlreadyAuthenticated = 4005
)

// maxBacklog bounds the dispatches a session keeps for RESUME.
const maxBacklog = 10000

// writeTimeout bounds one websocket write.
const writeTimeout = 5 * time.Second

// gatewaySession is one IDENTIFYed gateway session. It outlives its
// connection so that a client can RESUME it.
type gatewaySession struct {
	id      string
	userID  string // who logged in: the bot or a user
	intents int
	seq     int64
	backlog []sequenced // dispatches, oldest first, for RESUME
	conn    *websocket.Conn
}

type sequenced struct {
	seq     int64
	payload []byte
}

type frame struct {
	Op   int             `json:"op"`
	Data json.RawMessage `json:"d"`
	Seq  *int64          `json:"s,omitempty"`
	Type string          `json:"t,omitempty"`
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// serveGateway runs one gateway connection: HELLO, then IDENTIFY or RESUME,
// then heartbeats until the connection drops.
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("encoding") != "json" {
		http.Error(w, "only encoding=json is supported", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	down := s.gatewayDown
	s.mu.Unlock()
	if down {
		http.Error(w, "the gateway is down", http.StatusServiceUnavailable)
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	hello, _ := json.Marshal(map[string]any{"op": opHello, "d": map[string]int64{"heartbeat_interval": s.heartbeatInterval.Milliseconds()}})
	s.mu.Lock()
	err = writeFrame(conn, hello)
	s.mu.Unlock()
	if err != nil {
		return
	}
	sess := s.authenticate(conn)
	if sess == nil {
		return
	}
	defer s.detach(sess, conn)
	for {
		var f frame
		if err := conn.ReadJSON(&f); err != nil {
			return
		}
		switch f.Op {
		case opHeartbeat:
			s.mu.Lock()
			err = writeFrame(conn, []byte(`{"op":11,"d":null}`))
			s.mu.Unlock()
		case opIdentify, opResume:
			s.mu.Lock()
			closeWith(conn, closeAlreadyAuthenticated, "Already authenticated")
			s.mu.Unlock()
			return
		}
		if err != nil {
			return
		}
	}
}

// authenticate reads frames until the client IDENTIFYs or RESUMEs a known
// session, and attaches the connection to that session. It returns nil
// when the connection was refused or dropped.
func (s *Server) authenticate(conn *websocket.Conn) *gatewaySession {
	for {
		if err := conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			return nil
		}
		var f frame
		if err := conn.ReadJSON(&f); err != nil {
			return nil
		}
		if err := conn.SetReadDeadline(time.Time{}); err != nil {
			return nil
		}
		switch f.Op {
		case opHeartbeat:
			s.mu.Lock()
			err := writeFrame(conn, []byte(`{"op":11,"d":null}`))
			s.mu.Unlock()
			if err != nil {
				return nil
			}
		case opIdentify:
			var id struct {
				Token   string `json:"token"`
				Intents int    `json:"intents"`
			}
			user := s.gatewayUser(f.Data, &id, func() string { return id.Token })
			if user == nil {
				closeWith(conn, closeAuthenticationFailed, "Authentication failed.")
				return nil
			}
			return s.identify(conn, id.Intents, user)
		case opResume:
			var res struct {
				Token     string `json:"token"`
				SessionID string `json:"session_id"`
				Seq       int64  `json:"seq"`
			}
			user := s.gatewayUser(f.Data, &res, func() string { return res.Token })
			if user == nil {
				closeWith(conn, closeAuthenticationFailed, "Authentication failed.")
				return nil
			}
			if sess := s.resume(conn, res.SessionID, res.Seq, user.ID); sess != nil {
				return sess
			}
			// Unknown or expired session: the client must IDENTIFY afresh.
			s.mu.Lock()
			err := writeFrame(conn, []byte(`{"op":9,"d":false}`))
			s.mu.Unlock()
			if err != nil {
				return nil
			}
		default:
			closeWith(conn, closeNotAuthenticated, "Not authenticated.")
			return nil
		}
	}
}

// gatewayUser decodes an IDENTIFY or RESUME payload into v and returns who
// its token logs in as, or nil.
func (s *Server) gatewayUser(data json.RawMessage, v any, token func() string) *discordgo.User {
	if json.Unmarshal(data, v) != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenUserLocked(token(), true)
}

// identify starts a session: READY, then a GUILD_CREATE per guild. A user
// (not a bot) gets every event whatever the intents, and their private
// channels in READY.
func (s *Server) identify(conn *websocket.Conn, intents int, user *discordgo.User) *gatewaySession {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user.ID != s.bot.ID {
		intents = allIntents
	}
	sess := &gatewaySession{id: s.newID(), userID: user.ID, intents: intents, conn: conn}
	s.sessions[sess.id] = sess
	unavailable := make([]map[string]any, 0, len(s.guilds))
	for _, g := range s.guilds {
		unavailable = append(unavailable, map[string]any{"id": g.ID, "unavailable": true})
	}
	wsURL := "ws" + strings.TrimPrefix(s.http.URL, "http")
	var readyUser any = user
	if s.readyWithoutUser > 0 {
		s.readyWithoutUser--
		readyUser = nil
	}
	ready := map[string]any{
		"v": 10, "user": readyUser, "guilds": unavailable, "session_id": sess.id,
		"resume_gateway_url": wsURL, "shard": []int{0, 1}, "private_channels": []any{},
	}
	if user.ID == s.bot.ID {
		ready["application"] = map[string]any{"id": s.bot.ID, "flags": 0}
	} else {
		ready["private_channels"] = s.privateChannelsLocked(user.ID)
	}
	s.sendLocked(sess, "READY", ready)
	if intents&intentGuilds != 0 {
		for _, g := range s.guilds {
			s.sendLocked(sess, "GUILD_CREATE", s.guildCreateLocked(g))
		}
	}
	return sess
}

// resume reattaches a session and replays what it missed after seq, then
// sends RESUMED. It returns nil for an unknown session or a seq too old.
func (s *Server) resume(conn *websocket.Conn, sessionID string, seq int64, userID string) *gatewaySession {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[sessionID]
	if sess == nil || sess.userID != userID || (len(sess.backlog) > 0 && sess.backlog[0].seq > seq+1) {
		return nil
	}
	if sess.conn != nil {
		sess.conn.Close()
	}
	sess.conn = conn
	for _, d := range sess.backlog {
		if d.seq > seq && sess.conn != nil {
			s.writeLocked(sess, d.payload)
		}
	}
	s.sendLocked(sess, "RESUMED", map[string]any{})
	return sess
}

// detach forgets a session's connection when it ends; the session stays
// for RESUME.
func (s *Server) detach(sess *gatewaySession, conn *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.conn == conn {
		sess.conn = nil
	}
}

// DropGatewayConnections cuts every gateway connection without a close
// frame, as a network failure would; sessions stay resumable.
func (s *Server) DropGatewayConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.conn != nil {
			sess.conn.UnderlyingConn().Close()
			sess.conn = nil
		}
	}
}

// SendReadyWithoutUser makes the next n READY events carry "user": null,
// input a well-behaved Discord does not send, for tests of the bridge's
// resilience.
func (s *Server) SendReadyWithoutUser(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readyWithoutUser = n
}

// ForgetSessions cuts every gateway connection and forgets the sessions, so
// a client's RESUME is refused and it must IDENTIFY afresh (READY, not
// RESUMED), as after Discord expired its session.
func (s *Server) ForgetSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sess := range s.sessions {
		if sess.conn != nil {
			sess.conn.UnderlyingConn().Close()
		}
		delete(s.sessions, id)
	}
}

// SetGatewayDown makes the gateway refuse new connections (503) while down
// is true, as an outage would; connections open already stay.
func (s *Server) SetGatewayDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gatewayDown = down
}

// ConnectedSessions is how many sessions have a connection now.
func (s *Server) ConnectedSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.sessions {
		if sess.conn != nil {
			n++
		}
	}
	return n
}

// GatewaySessions is how many sessions have IDENTIFYed so far.
func (s *Server) GatewaySessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// dispatchLocked sends an event to every session whose intents include
// intent.
func (s *Server) dispatchLocked(event string, data any, intent int) {
	for _, sess := range s.sessions {
		if sess.intents&intent != 0 {
			s.sendLocked(sess, event, data)
		}
	}
}

// dispatchChannelLocked is dispatchLocked for an event in a channel: only
// sessions whose user sees the channel get it.
func (s *Server) dispatchChannelLocked(event string, data any, intent int, ch *discordgo.Channel) {
	for _, sess := range s.sessions {
		if sess.intents&intent != 0 && s.canSeeLocked(sess.userID, ch) {
			s.sendLocked(sess, event, data)
		}
	}
}

// dispatchMessageLocked sends MESSAGE_CREATE/UPDATE; as on Discord, a
// session without the MESSAGE_CONTENT intent gets guild messages of others
// without their content and attachments.
func (s *Server) dispatchMessageLocked(event string, ch *discordgo.Channel, m *discordgo.Message) {
	for _, sess := range s.sessions {
		if sess.intents&messageIntent(ch) == 0 || !s.canSeeLocked(sess.userID, ch) {
			continue
		}
		data := m
		if sess.intents&intentMessageContent == 0 && ch.GuildID != "" && m.Author.ID != sess.userID {
			data = cloneMessage(m)
			data.Content, data.Attachments, data.Embeds = "", []*discordgo.MessageAttachment{}, []*discordgo.MessageEmbed{}
		}
		s.sendLocked(sess, event, data)
	}
}

func messageIntent(ch *discordgo.Channel) int {
	if isPrivate(ch) {
		return intentDirectMessages
	}
	return intentGuildMessages
}

func reactionIntent(ch *discordgo.Channel) int {
	if isPrivate(ch) {
		return 1 << 13 // DIRECT_MESSAGE_REACTIONS
	}
	return 1 << 10 // GUILD_MESSAGE_REACTIONS
}

// sendLocked numbers a dispatch, keeps it for RESUME and writes it if the
// session is connected.
func (s *Server) sendLocked(sess *gatewaySession, event string, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		panic("discordfake: marshal " + event + ": " + err.Error())
	}
	sess.seq++
	seq := sess.seq
	payload, err := json.Marshal(frame{Op: opDispatch, Data: raw, Seq: &seq, Type: event})
	if err != nil {
		panic("discordfake: marshal frame: " + err.Error())
	}
	sess.backlog = append(sess.backlog, sequenced{seq: seq, payload: payload})
	if len(sess.backlog) > maxBacklog {
		sess.backlog = sess.backlog[len(sess.backlog)-maxBacklog:]
	}
	if sess.conn != nil {
		s.writeLocked(sess, payload)
	}
}

// writeLocked writes to the session's connection, dropping the connection
// if the write fails.
func (s *Server) writeLocked(sess *gatewaySession, payload []byte) {
	if err := writeFrame(sess.conn, payload); err != nil {
		sess.conn.Close()
		sess.conn = nil
	}
}

func writeFrame(conn *websocket.Conn, payload []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return conn.WriteMessage(websocket.TextMessage, payload)
}

func closeWith(conn *websocket.Conn, code int, text string) {
	msg := websocket.FormatCloseMessage(code, text)
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeTimeout)); err != nil {
		return
	}
}
