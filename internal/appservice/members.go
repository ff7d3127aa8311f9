package appservice

import (
	"reflect"
	"sync"

	"maunium.net/go/mautrix/id"
)

// maxMemberCache bounds memberCache; past it the cache starts afresh.
const maxMemberCache = 10000

// memberCache remembers, per registration and room, whether one of the
// room's joined members is in the registration's user namespaces. The
// answer holds for as long as the room has the same members map: the room
// engine never changes one once made (a membership change makes a new
// map), so an event in a large room costs one lookup instead of a regular
// expression per member. An entry keeps its map, so the map's address
// cannot be reused by another while the entry exists.
type memberCache struct {
	mu      sync.Mutex
	entries map[memberKey]memberEntry
}

type memberKey struct {
	reg  *Registration
	room id.RoomID
}

type memberEntry struct {
	members    map[id.UserID]string
	interested bool
}

// interested reports whether a joined member of members, the room's
// members, is in reg's user namespaces.
func (c *memberCache) interested(reg *Registration, roomID id.RoomID, members map[id.UserID]string) bool {
	key := memberKey{reg, roomID}
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && sameMap(e.members, members) {
		return e.interested
	}
	interested := namespaceMemberIn(reg, members)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxMemberCache {
		c.entries = map[memberKey]memberEntry{}
	}
	c.entries[key] = memberEntry{members: members, interested: interested}
	return interested
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap(a, b map[id.UserID]string) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
