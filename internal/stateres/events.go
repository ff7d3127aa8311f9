package stateres

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func init() {
	// eventauth.Authorize works out the create event's ID for every join
	// it checks (a canonical JSON encoding and a SHA-256 of the create
	// event each time, a third of a resolution's time over many member
	// events). With this, it reads the ID from InternalMeta.EventID where
	// that is set, which nothing but eventCache does (see nameCreate).
	pdu.UseInternalMetaForGetEventID = true
}

// eventCache remembers every event loaded during one resolution, so that
// each is read from the EventLoader once.
type eventCache struct {
	loader EventLoader
	events map[id.EventID]*pdu.PDU
	// nameCreate is set in room versions whose event IDs are reference
	// hashes: the create event is kept as a copy that carries its ID.
	nameCreate bool
}

func newEventCache(loader EventLoader, version id.RoomVersion) *eventCache {
	return &eventCache{loader: loader, events: map[id.EventID]*pdu.PDU{}, nameCreate: !usesV1Format(version)}
}

// LoadEvents implements EventLoader through the cache.
func (c *eventCache) LoadEvents(ctx context.Context, ids []id.EventID) ([]*pdu.PDU, error) {
	if err := c.load(ctx, ids); err != nil {
		return nil, err
	}
	out := make([]*pdu.PDU, len(ids))
	for i, eventID := range ids {
		out[i] = c.events[eventID]
	}
	return out, nil
}

// load makes sure the given events are in the cache; an event the loader
// does not have is an error.
func (c *eventCache) load(ctx context.Context, ids []id.EventID) error {
	var missing []id.EventID
	for _, eventID := range ids {
		if _, ok := c.events[eventID]; !ok {
			missing = append(missing, eventID)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(c.events) == 0 {
		c.events = make(map[id.EventID]*pdu.PDU, len(missing))
	}
	loaded, err := c.loader.LoadEvents(ctx, missing)
	if err != nil {
		return fmt.Errorf("load events: %w", err)
	}
	if len(loaded) != len(missing) {
		return fmt.Errorf("load events: asked for %d, got %d", len(missing), len(loaded))
	}
	for i, evt := range loaded {
		if evt == nil {
			return fmt.Errorf("%w: %s", ErrEventNotFound, missing[i])
		}
		if c.nameCreate && evt.Type == createKey.Type && evt.StateKey != nil && *evt.StateKey == "" {
			// The loader's event is shared: name a copy. Its ID is the
			// one asked for, which is the hash of its content.
			named := *evt
			named.InternalMeta.EventID = missing[i]
			evt = &named
		}
		c.events[missing[i]] = evt
	}
	return nil
}

// get returns a cached event, or nil.
func (c *eventCache) get(eventID id.EventID) *pdu.PDU {
	return c.events[eventID]
}

// fetch returns one event, loading it if needed.
func (c *eventCache) fetch(ctx context.Context, eventID id.EventID) (*pdu.PDU, error) {
	if evt, ok := c.events[eventID]; ok {
		return evt, nil
	}
	if err := c.load(ctx, []id.EventID{eventID}); err != nil {
		return nil, err
	}
	return c.events[eventID], nil
}
