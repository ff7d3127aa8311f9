package slackfake

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// pingInterval is how often the fake pings a Socket Mode connection; slack-go
// reconnects when it hears no ping for 30 seconds.
const pingInterval = 5 * time.Second

// socketState is the Socket Mode side: the open connections and the
// envelopes not acknowledged yet, in the order they were emitted.
type socketState struct {
	mu      sync.Mutex
	conns   map[*socketConn]bool
	pending []*envelope
	wake    chan struct{}
	nextEnv int
	acked   int
	down    bool // the socket endpoint refuses connections
}

type envelope struct {
	id       string
	payload  json.RawMessage
	attempts int
	sentOn   *socketConn
}

type socketConn struct {
	ws     *websocket.Conn
	writes sync.Mutex
	closed chan struct{}
	once   sync.Once
}

func (st *socketState) init() {
	st.conns = map[*socketConn]bool{}
	st.wake = make(chan struct{}, 1)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// serveSocket upgrades the URL apps.connections.open handed out (its ticket
// is single-use), says hello, delivers envelopes and reads acks.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := s.tickets[ticket]
	delete(s.tickets, ticket)
	appID := "A0BRIDGE"
	s.mu.Unlock()
	if !ok {
		http.Error(w, "invalid ticket", http.StatusUnauthorized)
		return
	}
	if s.socket.isDown() {
		http.Error(w, "socket endpoint unavailable", http.StatusServiceUnavailable)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn := &socketConn{ws: ws, closed: make(chan struct{})}
	st := &s.socket
	st.mu.Lock()
	st.conns[conn] = true
	n := len(st.conns)
	// Envelopes a closed connection never acked go out again on this one.
	for _, env := range st.pending {
		if env.sentOn != nil && !st.conns[env.sentOn] {
			env.sentOn = nil
		}
	}
	st.mu.Unlock()

	hello := map[string]any{
		"type": "hello", "num_connections": n,
		"connection_info": map[string]any{"app_id": appID},
		"debug_info":      map[string]any{"host": "slackfake", "build_number": 1, "approximate_connection_time": 18060},
	}
	if conn.write(hello) != nil {
		s.dropConn(conn)
		return
	}
	go s.pingLoop(conn)
	go s.deliverLoop(conn)
	s.readAcks(conn)
}

func (c *socketConn) write(v any) error {
	c.writes.Lock()
	defer c.writes.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteJSON(v)
}

func (c *socketConn) close() {
	c.once.Do(func() {
		close(c.closed)
		_ = c.ws.Close()
	})
}

func (s *Server) dropConn(c *socketConn) {
	c.close()
	st := &s.socket
	st.mu.Lock()
	delete(st.conns, c)
	for _, env := range st.pending {
		if env.sentOn == c {
			env.sentOn = nil
		}
	}
	st.mu.Unlock()
	st.poke()
}

func (s *Server) pingLoop(c *socketConn) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
			c.writes.Lock()
			err := c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second))
			c.writes.Unlock()
			if err != nil {
				s.dropConn(c)
				return
			}
		}
	}
}

// readAcks reads the client's messages: {"envelope_id": ...} acks an
// envelope; anything else is ignored, as Slack does.
func (s *Server) readAcks(c *socketConn) {
	defer s.dropConn(c)
	for {
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if err := c.ws.ReadJSON(&ack); err != nil {
			if _, isSyntax := err.(*json.SyntaxError); isSyntax {
				continue
			}
			return
		}
		s.socket.ack(ack.EnvelopeID)
		s.mu.Lock()
		s.notifyLocked()
		s.mu.Unlock()
	}
}

func (st *socketState) ack(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, env := range st.pending {
		if env.id == id {
			st.pending = append(st.pending[:i], st.pending[i+1:]...)
			st.acked++
			return
		}
	}
}

func (st *socketState) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// deliverLoop sends this connection every pending envelope not yet sent on
// an open connection, oldest first.
func (s *Server) deliverLoop(c *socketConn) {
	st := &s.socket
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		st.mu.Lock()
		var batch []*envelope
		for _, env := range st.pending {
			if env.sentOn == nil {
				env.sentOn = c
				env.attempts++
				batch = append(batch, env)
			}
		}
		st.mu.Unlock()
		for _, env := range batch {
			msg := map[string]any{
				"envelope_id": env.id, "type": "events_api", "payload": env.payload,
				"accepts_response_payload": false, "retry_attempt": env.attempts - 1,
			}
			if env.attempts > 1 {
				msg["retry_reason"] = "timeout"
			}
			if c.write(msg) != nil {
				s.dropConn(c)
				return
			}
		}
		select {
		case <-c.closed:
			return
		case <-st.wake:
			st.poke() // let the other connections look too
		case <-tick.C:
		}
	}
}

// emitLocked queues an Events API event_callback for delivery.
func (s *Server) emitLocked(event map[string]any) {
	st := &s.socket
	st.mu.Lock()
	st.nextEnv++
	n := st.nextEnv
	st.mu.Unlock()
	payload, err := json.Marshal(map[string]any{
		"token": "fake-verification-token", "team_id": s.team.ID, "api_app_id": "A0BRIDGE",
		"event": event, "type": "event_callback", "event_id": "Ev" + strconv.Itoa(n), "event_time": time.Now().Unix(),
		"authorizations": []map[string]any{{"team_id": s.team.ID, "user_id": s.botUserID, "is_bot": true}},
	})
	if err != nil {
		panic(err)
	}
	s.EmitRaw(payload)
}

// EmitRaw queues payload as the payload of an events_api envelope, for tests
// that send what a well-behaved Slack would not (malformed or oversized
// events). It must be a JSON value.
func (s *Server) EmitRaw(payload json.RawMessage) {
	st := &s.socket
	st.mu.Lock()
	st.nextEnv++
	st.pending = append(st.pending, &envelope{id: "env-" + strconv.Itoa(st.nextEnv), payload: payload})
	st.mu.Unlock()
	st.poke()
}

// Pending returns how many envelopes are not acknowledged yet.
func (s *Server) Pending() int {
	s.socket.mu.Lock()
	defer s.socket.mu.Unlock()
	return len(s.socket.pending)
}

// DropPending forgets every unacknowledged envelope, as Slack does once it
// has retried an event long enough.
func (s *Server) DropPending() {
	s.socket.mu.Lock()
	defer s.socket.mu.Unlock()
	s.socket.pending = nil
}

// PendingPayloads returns the payloads of the envelopes not acknowledged
// yet, oldest first.
func (s *Server) PendingPayloads() []string {
	s.socket.mu.Lock()
	defer s.socket.mu.Unlock()
	out := make([]string, len(s.socket.pending))
	for i, env := range s.socket.pending {
		out[i] = string(env.payload)
	}
	return out
}

// Acked returns how many envelopes the client has acknowledged.
func (s *Server) Acked() int {
	s.socket.mu.Lock()
	defer s.socket.mu.Unlock()
	return s.socket.acked
}

// Connections returns how many Socket Mode connections are open.
func (s *Server) Connections() int {
	s.socket.mu.Lock()
	defer s.socket.mu.Unlock()
	return len(s.socket.conns)
}

// Disconnect asks every connection to reconnect with a "disconnect"
// message, as Slack does before it cycles its servers; envelopes sent and
// not acked go out again on the next connection.
func (s *Server) Disconnect() {
	st := &s.socket
	st.mu.Lock()
	conns := make([]*socketConn, 0, len(st.conns))
	for c := range st.conns {
		conns = append(conns, c)
	}
	st.mu.Unlock()
	for _, c := range conns {
		_ = c.write(map[string]any{"type": "disconnect", "reason": "refresh_requested", "debug_info": map[string]any{"host": "slackfake"}})
		s.dropConn(c)
	}
}

// SetSocketDown drops every Socket Mode connection without a word (a network
// failure, not Slack's "disconnect") and refuses new ones while down is true;
// SetSocketDown(false) lets the client connect again. The Web API keeps
// working meanwhile.
func (s *Server) SetSocketDown(down bool) {
	st := &s.socket
	st.mu.Lock()
	st.down = down
	conns := make([]*socketConn, 0, len(st.conns))
	for c := range st.conns {
		conns = append(conns, c)
	}
	st.mu.Unlock()
	if !down {
		return
	}
	for _, c := range conns {
		s.dropConn(c)
	}
}

func (st *socketState) isDown() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.down
}

func (st *socketState) closeAll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for c := range st.conns {
		c.close()
	}
}
