package keys

import (
	gosync "sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// syncCache spares /sync the key queries when nothing changed: every write
// that touches a user's one-time keys, fallback keys or to-device inbox
// bumps the user's version after it commits, and what a device's last sync
// read (counts, fallback types, an empty inbox) is reused while the version
// stays the same.
type syncCache struct {
	mu      gosync.Mutex
	version map[id.UserID]uint64
	devices map[deviceKey]*deviceSyncState
}

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

type deviceSyncState struct {
	version   uint64
	counts    map[string]int
	fallback  []string
	inboxNone bool // no to-device message was pending
}

// touchAfter bumps the users' versions once tx commits.
func (c *syncCache) touchAfter(tx *storage.Tx, users ...id.UserID) {
	tx.AfterCommit(func() { c.touch(users...) })
}

func (c *syncCache) touch(users ...id.UserID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == nil {
		c.version = map[id.UserID]uint64{}
	}
	for _, u := range users {
		c.version[u]++
	}
}

// get returns the user's version and the device's state if it is current.
func (c *syncCache) get(user id.UserID, device id.DeviceID) (uint64, *deviceSyncState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.version[user]
	st := c.devices[deviceKey{user, device}]
	if st != nil && st.version == v {
		return v, st
	}
	return v, nil
}

// put stores what a sync read at version v.
func (c *syncCache) put(user id.UserID, device id.DeviceID, st *deviceSyncState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.devices == nil {
		c.devices = map[deviceKey]*deviceSyncState{}
	}
	if len(c.devices) > 100000 {
		clear(c.devices)
	}
	c.devices[deviceKey{user, device}] = st
}
