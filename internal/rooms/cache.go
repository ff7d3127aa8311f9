package rooms

import (
	"sync"

	"maunium.net/go/mautrix/id"
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
// change, so entries never go stale; the cache is bounded by the total
// number of state entries it holds and simply starts over when full.
type snapshotCache struct {
	mu      sync.Mutex
	m       map[int64]*resolvedSnapshot
	entries int
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
