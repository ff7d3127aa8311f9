package stateres

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// eventCache remembers every event loaded during one resolution, so that
// each is read from the EventLoader once.
type eventCache struct {
	loader EventLoader
	events map[id.EventID]*pdu.PDU
}

func newEventCache(loader EventLoader) *eventCache {
	return &eventCache{loader: loader, events: map[id.EventID]*pdu.PDU{}}
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
