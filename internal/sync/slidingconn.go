package sync

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Bounds on the sliding sync state kept in memory.
const (
	// maxConnsPerDevice is how many connections (conn_id values) one
	// device may have; Element X uses three.
	maxConnsPerDevice = 8
	// maxConns is how many connections the node keeps in all.
	maxConns = 20000
	// maxPositions is how many positions a connection keeps: the one the
	// client used last and the newest responses' (a client retries with
	// the latest pos it processed, so only those can come back).
	maxPositions = 4
	// maxConnIDBytes bounds the client-chosen conn_id.
	maxConnIDBytes = 255
)

// errUnknownPos answers a pos the node does not know (never issued, from
// before a restart, or expired): the client starts the connection over.
func errUnknownPos() *mxhttp.Error {
	return &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN_POS", Message: "unknown or expired pos; start the connection again"}
}

// connKey identifies a sliding sync connection: conn_id is scoped to the
// user and device.
type connKey struct {
	user   id.UserID
	device id.DeviceID
	connID string
}

// connState is what a connection has been sent as of one pos: the
// response at that pos was built up to token, and rooms records, for
// every room ever sent on the connection, how far it went. A connState is
// never changed once stored; each response stores a new one.
type connState struct {
	token Token
	rooms sentRooms
	// counts are the list counts last sent, to tell a change in them.
	counts map[string]int
	// window is the set of rooms the last response's lists and
	// subscriptions matched: a room entering it gets its receipts and
	// room account data in full. A response whose window did not change
	// shares its predecessor's; it is never written once stored.
	window map[id.RoomID]bool
	// subscriptions are the connection's room subscriptions.
	subscriptions map[id.RoomID]*roomConfig
	// followed is what the next response needs to follow this one's room
	// list from the events since, instead of building it again.
	followed followedList
}

// roomSent is what a connection knows of one room.
type roomSent struct {
	// pos is the stream position the room's data was sent up to.
	pos int64
	// membership is the user's membership when the room was last sent: a
	// change (an invite accepted) sends the room afresh.
	membership string
	// config is the required_state the room was last sent with; a
	// different one sends the state it now asks for.
	config string
	// limit is the timeline_limit the room was last sent with; a larger
	// one sends that many of its newest events again.
	limit int
	// isDM is the is_dm flag last sent.
	isDM bool
	// members are the users whose member events lazy loading already sent.
	members map[id.UserID]bool
	// counts are the unread counts last sent.
	counts Counts
}

// sentRooms maps the rooms a connection was sent to what it was sent of
// them. A response changes few of them, so the state it stores is layered:
// a base map and the layers of the responses since it was made, all
// shared with the states before and never written, and top, the changes
// of the response being built. A successor copies only the list of its
// layers; the layers are merged into one once there are maxSentLayers of
// them, and into a new base once they hold a quarter as many rooms. A
// response thus copies what changed lately, not every room the
// connection was ever sent, and an older state stays whole for a client
// that retries its pos.
type sentRooms struct {
	base   map[id.RoomID]roomSent
	layers []map[id.RoomID]roomSent // oldest first
	size   int                      // rooms in layers, counted with repeats
	top    map[id.RoomID]roomSent
}

// Bounds of sentRooms' layers: how many rooms they hold before they are
// folded into the base, however small it is, and how many layers a
// lookup may go through.
const (
	minFoldedTop  = 64
	maxSentLayers = 8
)

// get returns what was sent of the room, and whether it was.
func (s *sentRooms) get(roomID id.RoomID) (roomSent, bool) {
	if r, ok := s.top[roomID]; ok {
		return r, true
	}
	for i := len(s.layers) - 1; i >= 0; i-- {
		if r, ok := s.layers[i][roomID]; ok {
			return r, true
		}
	}
	r, ok := s.base[roomID]
	return r, ok
}

// set records what was sent of the room. Only a state being built is set.
func (s *sentRooms) set(roomID id.RoomID, r roomSent) {
	if s.top == nil {
		s.top = map[id.RoomID]roomSent{}
	}
	s.top[roomID] = r
}

// successor returns s for the next response to change: it shares s's
// maps, which it never writes.
func (s *sentRooms) successor() sentRooms {
	layers := s.layers
	size := s.size
	if len(s.top) > 0 {
		layers = append(slices.Clip(layers), s.top)
		size += len(s.top)
	}
	switch {
	case size >= max(minFoldedTop, len(s.base)/4):
		base := make(map[id.RoomID]roomSent, len(s.base)+size)
		maps.Copy(base, s.base)
		for _, l := range layers {
			maps.Copy(base, l)
		}
		return sentRooms{base: base}
	case len(layers) > maxSentLayers:
		merged := make(map[id.RoomID]roomSent, size)
		for _, l := range layers {
			maps.Copy(merged, l)
		}
		return sentRooms{base: s.base, layers: []map[id.RoomID]roomSent{merged}, size: len(merged)}
	}
	return sentRooms{base: s.base, layers: layers, size: size}
}

// sameConfig reports whether r and o were sent with the same membership,
// required_state, timeline_limit and is_dm.
func (r roomSent) sameConfig(o roomSent) bool {
	return r.membership == o.membership && r.config == o.config && r.limit == o.limit && r.isDM == o.isDM
}

// newConnState is the state of a connection that has been sent nothing.
func newConnState() *connState {
	return &connState{
		token: Token{initial: true}, counts: map[string]int{},
		window: map[id.RoomID]bool{}, subscriptions: map[id.RoomID]*roomConfig{},
	}
}

// slidingConn is one connection: the states of its recent positions.
type slidingConn struct {
	id        string // random, the prefix of its pos tokens
	next      int64
	positions map[int64]*connState
	// acked is the pos the client used last: it may use it again (a
	// retry, or a request cancelled and sent with other parameters), so
	// it is kept however many newer positions its requests made.
	acked int64
	used  time.Time
}

// connStore holds the sliding sync connections in memory, bounded in
// number per device and in all; the least recently used go first. A
// restart forgets them: clients then get M_UNKNOWN_POS and start over.
type connStore struct {
	mu    gosync.Mutex
	conns map[connKey]*slidingConn
}

// begin returns the connection's state at pos, or a fresh state (and a
// fresh connection, dropping any other with that key) when pos is empty.
// Using a pos acknowledges it: older positions are forgotten.
func (cs *connStore) begin(key connKey, pos string) (*slidingConn, *connState, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.conns == nil {
		cs.conns = map[connKey]*slidingConn{}
	}
	if pos == "" {
		c := &slidingConn{id: randomID(), positions: map[int64]*connState{}, used: time.Now()}
		cs.conns[key] = c
		cs.evict(key)
		return c, newConnState(), nil
	}
	prefix, n, ok := parsePos(pos)
	c := cs.conns[key]
	if !ok || c == nil || c.id != prefix || c.positions[n] == nil {
		return nil, nil, errUnknownPos()
	}
	for p := range c.positions {
		if p < n {
			delete(c.positions, p)
		}
	}
	c.acked = n
	c.used = time.Now()
	return c, c.positions[n], nil
}

// save stores st as the connection's next position and returns its pos.
func (cs *connStore) save(c *slidingConn, st *connState) string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	n := c.next
	c.next++
	c.positions[n] = st
	for len(c.positions) > maxPositions {
		oldest := n
		for p := range c.positions {
			if p != c.acked {
				oldest = min(oldest, p)
			}
		}
		delete(c.positions, oldest)
	}
	return c.id + "_" + strconv.FormatInt(n, 10)
}

// evict drops the least recently used connections beyond the bounds,
// never keep.
func (cs *connStore) evict(keep connKey) {
	for {
		var device []connKey
		for k := range cs.conns {
			if k.user == keep.user && k.device == keep.device {
				device = append(device, k)
			}
		}
		switch {
		case len(device) > maxConnsPerDevice:
			delete(cs.conns, cs.leastUsed(device, keep))
		case len(cs.conns) > maxConns:
			all := make([]connKey, 0, len(cs.conns))
			for k := range cs.conns {
				all = append(all, k)
			}
			delete(cs.conns, cs.leastUsed(all, keep))
		default:
			return
		}
	}
}

// leastUsed returns the key among keys, other than keep, whose connection
// was used longest ago.
func (cs *connStore) leastUsed(keys []connKey, keep connKey) connKey {
	var oldest connKey
	var when time.Time
	for _, k := range keys {
		if k == keep {
			continue
		}
		if c := cs.conns[k]; when.IsZero() || c.used.Before(when) {
			oldest, when = k, c.used
		}
	}
	return oldest
}

// parsePos splits a pos token into its connection prefix and number.
func parsePos(pos string) (string, int64, bool) {
	prefix, num, ok := strings.Cut(pos, "_")
	if !ok {
		return "", 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return prefix, n, err == nil && n >= 0
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
