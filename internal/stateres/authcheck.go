package stateres

import (
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// errNoKeys answers signature checks when the Resolver has no GetKey.
var errNoKeys = errors.New("state resolution was given no way to fetch server keys")

// iterativeAuthChecks applies each event of the list, in order, to state if
// the auth rules allow it against state; a key the rules need that state
// lacks is taken from the event's own auth_events unless that auth event was
// rejected. Events the rules refuse are skipped.
func (r *resolution) iterativeAuthChecks(state StateMap, events []id.EventID) error {
	for _, eventID := range events {
		evt := r.events.get(eventID)
		if evt.StateKey == nil {
			continue
		}
		authEvents, createID, err := r.authEventsFor(state, evt)
		if err != nil {
			return fmt.Errorf("auth events for %s: %w", eventID, err)
		}
		if err := authorizeIn(r.version, evt, authEvents, createID, r.getEvents, r.keyGetter()); err != nil {
			continue
		}
		state[StateKey{Type: evt.Type, StateKey: *evt.StateKey}] = eventID
	}
	return nil
}

// authEventsFor selects the events that authorise evt against state, and
// returns the ID of the create event among them, if any.
func (r *resolution) authEventsFor(state StateMap, evt *pdu.PDU) ([]*pdu.PDU, id.EventID, error) {
	selection := evt.AuthEventSelection(r.version)
	// Non-nil even when empty: a nil slice makes Authorize use the
	// event's own auth_events.
	authEvents := make([]*pdu.PDU, 0, len(selection))
	var createID id.EventID
	for _, key := range selection {
		authID, authEvt, err := r.authEventFor(state, evt, key)
		if err != nil {
			return nil, "", err
		}
		if authEvt == nil {
			continue
		}
		authEvents = append(authEvents, authEvt)
		if key == createKey {
			createID = authID
		}
	}
	return authEvents, createID, nil
}

// authEventFor is the event at key in state or, failing that, evt's auth
// event at key if it was not rejected.
func (r *resolution) authEventFor(state StateMap, evt *pdu.PDU, key StateKey) (id.EventID, *pdu.PDU, error) {
	if eventID, ok := state[key]; ok {
		authEvt, err := r.events.fetch(r.ctx, eventID)
		return eventID, authEvt, err
	}
	for _, authID := range evt.AuthEvents {
		authEvt, err := r.events.fetch(r.ctx, authID)
		if err != nil {
			return "", nil, err
		}
		if authEvt.Type == key.Type && authEvt.StateKey != nil && *authEvt.StateKey == key.StateKey {
			if authEvt.InternalMeta.Rejected {
				return "", nil, nil
			}
			return authID, authEvt, nil
		}
	}
	return "", nil, nil
}

// usesV1Format reports whether events of the room version have the original
// format, with event IDs chosen by their server.
func usesV1Format(version id.RoomVersion) bool {
	return version == id.RoomV1 || version == id.RoomV2
}

// authorizeIn runs the auth rules of the room version on evt, whose create
// event, among authEvents, has the ID createID. Room versions 1 and 2 share
// version 3's auth rules but not its event format: mautrix (given a v1 or v2
// room version) cannot compute the create event's ID that the creator's
// join is checked against, so these are checked as version 3, with a
// prev_event naming the create event renamed to its version 3 ID.
func authorizeIn(version id.RoomVersion, evt *pdu.PDU, authEvents []*pdu.PDU, createID id.EventID, getEvents eventauth.GetEventsFunc, getKey pdu.GetKeyFunc) error {
	if !usesV1Format(version) {
		return authorize(version, evt, authEvents, getEvents, getKey)
	}
	checked := evt
	if len(evt.PrevEvents) == 1 && createID != "" && evt.PrevEvents[0] == createID {
		for _, authEvt := range authEvents {
			if authEvt.Type != createKey.Type {
				continue
			}
			if v3ID, err := authEvt.GetEventID(id.RoomV3); err == nil {
				renamed := *evt
				renamed.PrevEvents = []id.EventID{v3ID}
				checked = &renamed
			}
		}
	}
	return authorize(id.RoomV3, checked, authEvents, getEvents, getKey)
}

// getEvents serves Authorize's look-ups (the create event, in room versions
// whose room ID is derived from it).
func (r *resolution) getEvents(ids []id.EventID) ([]*pdu.PDU, error) {
	events, err := r.events.LoadEvents(r.ctx, ids)
	if errors.Is(err, ErrEventNotFound) {
		// Authorize reports a missing event itself.
		return nil, nil
	}
	return events, err
}

func (r *resolution) keyGetter() pdu.GetKeyFunc {
	if r.getKey != nil {
		return r.getKey
	}
	return func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
		return "", time.Time{}, errNoKeys
	}
}

// errAuthorizePanicked stands for a panic in eventauth.Authorize.
var errAuthorizePanicked = errors.New("the auth rules panicked")

// authorize is eventauth.Authorize turning a panic into a refusal. Authorize
// (mautrix v0.33.0) dereferences a nil level when a power levels event drops
// a user whose old level is at least the sender's; the spec refuses that
// event, so refusing on a panic is the right answer there, and an event
// that makes the auth rules panic can never be allowed.
func authorize(version id.RoomVersion, evt *pdu.PDU, authEvents []*pdu.PDU, getEvents eventauth.GetEventsFunc, getKey pdu.GetKeyFunc) (err error) {
	defer func() {
		if recovered := recover(); recovered != nil {
			err = fmt.Errorf("%w: %v", errAuthorizePanicked, recovered)
		}
	}()
	return eventauth.Authorize(version, evt, authEvents, getEvents, getKey)
}
