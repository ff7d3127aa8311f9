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
