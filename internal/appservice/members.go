package appservice

import (
	"container/list"
	"reflect"
	"sync"

	"maunium.net/go/mautrix/id"
)

// maxMemberCache bounds memberCache; past it the least recently used
// entry goes.
const maxMemberCache = 10000

// memberCache remembers, per registration and room, whether one of the
// room's joined members is in the registration's user namespaces. The
// answer holds for as long as the room has the same members map: the room
// engine never changes one once made (a membership change makes a new
// map), so an event in a large room costs one lookup instead of a regular
// expression per member. An entry keeps its map, so the map's address
// cannot be reused by another while the entry exists. It holds at most
// maxMemberCache entries and forgets the least recently used first, so
// the rooms in use stay cached however many others pass through.
type memberCache struct {
	mu      sync.Mutex
	entries map[memberKey]*list.Element // of *memberEntry, in recency
	recency list.List                   // most recently used first
}

type memberKey struct {
	reg  *Registration
	room id.RoomID
}

type memberEntry struct {
	key        memberKey
	members    map[id.UserID]string
	interested bool
}

// interested reports whether a joined member of members, the room's
// members, is in reg's user namespaces.
func (c *memberCache) interested(reg *Registration, roomID id.RoomID, members map[id.UserID]string) bool {
	key := memberKey{reg, roomID}
	if interested, ok := c.lookup(key, members); ok {
		return interested
	}
	interested := namespaceMemberIn(reg, members)
	c.store(&memberEntry{key: key, members: members, interested: interested})
	return interested
}

// lookup returns the answer remembered for key if it was made for the
// same members map, and marks it used.
func (c *memberCache) lookup(key memberKey, members map[id.UserID]string) (interested, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, found := c.entries[key]
	if !found {
		return false, false
	}
	e := el.Value.(*memberEntry)
	if !sameMap(e.members, members) {
		return false, false
	}
	c.recency.MoveToFront(el)
	return e.interested, true
}

// store remembers e, replacing the entry of its key, and forgets the least
// recently used entries past maxMemberCache.
func (c *memberCache) store(e *memberEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[memberKey]*list.Element{}
	}
	if el, found := c.entries[e.key]; found {
		el.Value = e
		c.recency.MoveToFront(el)
		return
	}
	c.entries[e.key] = c.recency.PushFront(e)
	for c.recency.Len() > maxMemberCache {
		oldest := c.recency.Back()
		c.recency.Remove(oldest)
		delete(c.entries, oldest.Value.(*memberEntry).key)
	}
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap(a, b map[id.UserID]string) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
