package rooms

import (
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/stateres"
)

// eventCache keeps recently used events in memory. When full it drops an
// arbitrary half, which is cheap and good enough for a working set that is
// mostly the newest events.
type eventCache struct {
	mu  sync.RWMutex
	max int
	m   map[id.EventID]*Event
}

func newEventCache(max int) eventCache {
	return eventCache{max: max, m: make(map[id.EventID]*Event, max)}
}

func (c *eventCache) get(evID id.EventID) *Event {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[evID]
}

func (c *eventCache) put(ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		n := 0
		for k := range c.m {
			delete(c.m, k)
			if n++; n >= c.max/2 {
				break
			}
		}
	}
	c.m[ev.ID] = ev
}

func (c *eventCache) drop(evID id.EventID) {
	c.mu.Lock()
	delete(c.m, evID)
	c.mu.Unlock()
}

// resolvedSnapshot is the full state of one committed snapshot.
type resolvedSnapshot struct {
	state    map[stateKey]id.EventID
	chainLen int
}

// snapshotCache keeps resolved snapshots. Committed snapshots never
// change (but for reset), so entries never go stale; the cache is bounded by the total
// number of state entries it holds and simply starts over when full.
type snapshotCache struct {
	mu      sync.Mutex
	m       map[int64]*resolvedSnapshot
	entries int
	// gen counts resets: a snapshot resolved before one is not cached.
	gen uint64
}

// generation returns the count of resets, to pass to putAt.
func (c *snapshotCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// reset forgets every snapshot: the one exception to their never
// changing, a partial-state room's snapshots completed with the full
// state (partial.go).
func (c *snapshotCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m, c.entries = nil, 0
	c.gen++
}

// putAt is put for a snapshot resolved at generation gen: nothing is
// kept when the cache was reset since.
func (c *snapshotCache) putAt(gen uint64, snap int64, st *resolvedSnapshot) {
	c.mu.Lock()
	stale := c.gen != gen
	c.mu.Unlock()
	if !stale {
		c.put(snap, st)
	}
}

const maxSnapshotEntries = 200000

func (c *snapshotCache) get(snap int64) (*resolvedSnapshot, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[snap]
	return st, ok
}

func (c *snapshotCache) put(snap int64, st *resolvedSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.entries+len(st.state) > maxSnapshotEntries {
		c.m = map[int64]*resolvedSnapshot{}
		c.entries = 0
	}
	if _, ok := c.m[snap]; !ok {
		c.m[snap] = st
		c.entries += len(st.state)
	}
}

// authGraphs keeps the auth-chain index (a stateres.AuthGraph) of each room
// that state resolution ran in, so that later resolutions walk the room's
// auth chains in memory instead of loading every event of its state again.
// All graphs together hold about maxAuthGraphEvents events: asking for a
// room's graph drops the least recently used others while they hold more.
type authGraphs struct {
	mu     sync.Mutex
	graphs map[id.RoomID]*usedGraph
	clock  uint64
}

type usedGraph struct {
	graph *stateres.AuthGraph
	used  uint64
}

// maxAuthGraphEvents bounds the events remembered by all rooms' auth
// graphs: about 150 bytes each, so some 30 MB at most. A room's graph
// must hold the auth chains of its state, or every resolution in it
// starts afresh: 200,000 is twice issue 16's big room (10,000 members,
// 100,000 state events).
const maxAuthGraphEvents = 200_000

// of returns the room's graph, making it if needed.
func (c *authGraphs) of(roomID id.RoomID) *stateres.AuthGraph {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.graphs == nil {
		c.graphs = map[id.RoomID]*usedGraph{}
	}
	c.clock++
	entry := c.graphs[roomID]
	if entry == nil {
		entry = &usedGraph{graph: stateres.NewAuthGraph(maxAuthGraphEvents)}
		c.graphs[roomID] = entry
	}
	entry.used = c.clock
	c.trim()
	return entry.graph
}

// trim drops the least recently used graphs while all hold more than
// maxAuthGraphEvents events, keeping the one just used.
func (c *authGraphs) trim() {
	total := 0
	for _, entry := range c.graphs {
		total += entry.graph.Len()
	}
	for total > maxAuthGraphEvents && len(c.graphs) > 1 {
		var oldest id.RoomID
		for roomID, entry := range c.graphs {
			if entry.used != c.clock && (oldest == "" || entry.used < c.graphs[oldest].used) {
				oldest = roomID
			}
		}
		total -= c.graphs[oldest].graph.Len()
		delete(c.graphs, oldest)
	}
}

// drop forgets a room's graph (the room was purged).
func (c *authGraphs) drop(roomID id.RoomID) {
	c.mu.Lock()
	delete(c.graphs, roomID)
	c.mu.Unlock()
}
