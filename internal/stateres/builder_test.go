package stateres

import (
	"context"
	"encoding/json/v2"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// roomBuilder builds the events of one room by hand: every event is
// authorised against the state of the fork it is sent on, as a server would
// have done before accepting it.
type roomBuilder struct {
	tb      testing.TB
	version id.RoomVersion
	roomID  id.RoomID
	events  EventMap
	order   []id.EventID
	clock   int64
}

// fork is one line of history: its last event and the state after it.
type fork struct {
	room  *roomBuilder
	head  id.EventID
	depth int64
	state StateMap
}

func newRoomBuilder(tb testing.TB, version id.RoomVersion) *roomBuilder {
	tb.Helper()
	b := &roomBuilder{tb: tb, version: version, events: EventMap{}, clock: 1_700_000_000_000}
	if !version.RoomIDIsCreateEventID() {
		// Otherwise the room ID is the create event's ID with another sigil.
		b.roomID = "!room:example.org"
	}
	return b
}

// create starts the room: the create event and the creator's join.
func (b *roomBuilder) create(creator id.UserID) *fork {
	b.tb.Helper()
	content := map[string]any{"room_version": string(b.version)}
	if b.version.CreatorInContent() {
		content["creator"] = creator.String()
	}
	f := &fork{room: b, state: StateMap{}}
	createID, err := f.send(creator, event.StateCreate.Type, "", content)
	if err != nil {
		b.tb.Fatalf("create: %v", err)
	}
	if b.version.RoomIDIsCreateEventID() {
		b.roomID = id.RoomID("!" + createID.String()[1:])
	}
	f.mustSend(creator, event.StateMember.Type, creator.String(), member("join"))
	return f
}

// branch starts a new fork from the state after this one's head.
func (f *fork) branch() *fork {
	return &fork{room: f.room, head: f.head, depth: f.depth, state: cloneState(f.state)}
}

// mustSend sends a state event that must pass the auth rules.
func (f *fork) mustSend(sender id.UserID, evtType, stateKey string, content map[string]any) id.EventID {
	f.room.tb.Helper()
	eventID, err := f.send(sender, evtType, stateKey, content)
	if err != nil {
		f.room.tb.Fatalf("send %s/%s by %s: %v", evtType, stateKey, sender, err)
	}
	return eventID
}

// send sends a state event on the fork, or reports why the auth rules
// refuse it (and then adds nothing).
func (f *fork) send(sender id.UserID, evtType, stateKey string, content map[string]any) (id.EventID, error) {
	b := f.room
	raw, err := json.Marshal(content)
	if err != nil {
		b.tb.Fatalf("marshal content: %v", err)
	}
	b.clock += 1000
	evt := &pdu.PDU{
		Type:           evtType,
		StateKey:       &stateKey,
		Sender:         sender,
		Content:        raw,
		RoomID:         b.roomID,
		OriginServerTS: b.clock,
		Depth:          f.depth + 1,
		AuthEvents:     []id.EventID{},
		PrevEvents:     []id.EventID{},
	}
	if evtType == event.StateCreate.Type && b.version.RoomIDIsCreateEventID() {
		evt.RoomID = ""
	}
	if f.head != "" {
		evt.PrevEvents = []id.EventID{f.head}
	}
	var authEvents []*pdu.PDU
	for _, key := range evt.AuthEventSelection(b.version) {
		if authID, ok := f.state[key]; ok {
			evt.AuthEvents = append(evt.AuthEvents, authID)
			authEvents = append(authEvents, b.events[authID])
		}
	}
	if authEvents == nil {
		authEvents = []*pdu.PDU{}
	}
	getEvents := func(ids []id.EventID) ([]*pdu.PDU, error) {
		out, _ := b.events.LoadEvents(context.Background(), ids)
		if len(out) == 1 && out[0] == nil {
			return nil, nil
		}
		return out, nil
	}
	noKeys := func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
		return "", time.Time{}, errNoKeys
	}
	if err := authorizeIn(b.version, evt, authEvents, f.state[createKey], getEvents, noKeys); err != nil {
		return "", err
	}
	var eventID id.EventID
	if usesV1Format(b.version) {
		// The sending server names the event.
		eventID = id.EventID(fmt.Sprintf("$%d:example.org", len(b.order)))
	} else if eventID, err = evt.GetEventID(b.version); err != nil {
		b.tb.Fatalf("event ID: %v", err)
	}
	evt.InternalMeta.EventID = eventID
	b.events[eventID] = evt
	b.order = append(b.order, eventID)
	f.head = eventID
	f.depth++
	f.state[StateKey{Type: evtType, StateKey: stateKey}] = eventID
	return eventID, nil
}

func member(membership string) map[string]any {
	return map[string]any{"membership": membership}
}

// powerLevels is power levels content giving users their levels, everything
// else at the spec's defaults.
func powerLevels(users map[id.UserID]int) map[string]any {
	levels := map[string]any{}
	for user, level := range users {
		levels[user.String()] = level
	}
	return map[string]any{
		"users":          levels,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         0,
	}
}

// resolve runs state resolution over the forks' states.
func (b *roomBuilder) resolve(forks ...*fork) StateMap {
	b.tb.Helper()
	states := make([]StateMap, len(forks))
	for i, f := range forks {
		states[i] = f.state
	}
	resolved, err := Resolver{Events: b.events}.Resolve(context.Background(), b.version, states)
	if err != nil {
		b.tb.Fatalf("resolve: %v", err)
	}
	return resolved
}
