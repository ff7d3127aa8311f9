package stateres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// StateKey is the (event type, state key) pair that a room's state is keyed by.
type StateKey = pdu.StateKey

// StateMap maps each (event type, state key) pair to the ID of the state
// event that holds it.
type StateMap map[StateKey]id.EventID

// EventLoader loads events by ID.
type EventLoader interface {
	// LoadEvents returns the events with the given IDs, in the same order. An
	// event it does not have is nil in the result, not an error.
	LoadEvents(ctx context.Context, ids []id.EventID) ([]*pdu.PDU, error)
}

// EventMap is an EventLoader over events held in memory.
type EventMap map[id.EventID]*pdu.PDU

// LoadEvents implements EventLoader.
func (m EventMap) LoadEvents(_ context.Context, ids []id.EventID) ([]*pdu.PDU, error) {
	out := make([]*pdu.PDU, len(ids))
	for i, eventID := range ids {
		out[i] = m[eventID]
	}
	return out, nil
}

// ErrEventNotFound is returned (wrapped) when an event that resolution needs,
// a state event or one in its auth chain, cannot be loaded.
var ErrEventNotFound = errors.New("event not found")

// ErrUnsupportedRoomVersion is returned (wrapped) for room versions that do
// not use state resolution v2 or v2.1.
var ErrUnsupportedRoomVersion = errors.New("room version does not use state resolution v2")

// Resolver resolves conflicting states of one room.
type Resolver struct {
	// Events loads the state events and their auth chains. Required.
	Events EventLoader
	// Index answers auth DAG questions. Nil walks auth_events through Events
	// (see WalkIndex).
	Index AuthIndex
	// GetKey fetches server keys to verify third-party invite signatures
	// during the auth checks. Nil fails such checks.
	GetKey pdu.GetKeyFunc
}

// Resolve merges the given states of a room of the given version into one,
// following state resolution v2 (room versions 2 to 11) or v2.1 (room
// version 12). The states must be of one room, and Events must hold their
// events and those events' auth chains. The states are not modified.
func (r Resolver) Resolve(ctx context.Context, version id.RoomVersion, states []StateMap) (StateMap, error) {
	if !version.IsKnown() {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedRoomVersion, version)
	}
	algorithm := version.StateResVersion()
	if algorithm != id.StateResV2 && algorithm != id.StateResV2_1 {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedRoomVersion, version)
	}
	if len(states) == 0 {
		return StateMap{}, nil
	}
	unconflicted, conflicted := splitStates(states)
	if len(conflicted) == 0 {
		return unconflicted, nil
	}
	res := &resolution{
		ctx:     ctx,
		version: version,
		v21:     algorithm == id.StateResV2_1,
		events:  newEventCache(r.Events, version),
		getKey:  r.GetKey,
	}
	res.index = r.Index
	if res.index == nil {
		res.index = WalkIndex{Events: res.events}
	}
	return res.run(states, unconflicted, conflicted)
}

// splitStates divides the states into the unconflicted state map (keys
// present in every state with the same event) and the conflicted state set
// (every other event), the latter sorted by event ID.
func splitStates(states []StateMap) (StateMap, []id.EventID) {
	unconflicted := StateMap{}
	conflicted := map[id.EventID]struct{}{}
	keys := map[StateKey]struct{}{}
	for _, state := range states {
		for key := range state {
			keys[key] = struct{}{}
		}
	}
	for key := range keys {
		first, same := states[0][key]
		for _, state := range states[1:] {
			if eventID, ok := state[key]; !ok || eventID != first {
				same = false
				break
			}
		}
		if same {
			unconflicted[key] = first
			continue
		}
		for _, state := range states {
			if eventID, ok := state[key]; ok {
				conflicted[eventID] = struct{}{}
			}
		}
	}
	return unconflicted, sortedIDs(conflicted)
}

// resolution is the working state of one call to Resolve.
type resolution struct {
	ctx     context.Context
	version id.RoomVersion
	v21     bool
	events  *eventCache
	index   AuthIndex
	getKey  pdu.GetKeyFunc

	// mainline maps each power-level event of the mainline to its position
	// (0 for the resolved power levels); mainlinePos caches the position
	// found for every power-level event walked while ordering.
	mainline    map[id.EventID]int
	mainlinePos map[id.EventID]int
}

func (r *resolution) run(states []StateMap, unconflicted StateMap, conflicted []id.EventID) (StateMap, error) {
	full, err := r.fullConflictedSet(states, conflicted)
	if err != nil {
		return nil, err
	}
	if err := r.events.load(r.ctx, full); err != nil {
		return nil, err
	}

	// 1. The power events of the full conflicted set and the events of their
	//    auth chains that are in it, in reverse topological power ordering.
	powerSet, err := r.powerSet(full)
	if err != nil {
		return nil, err
	}
	powerOrdered, err := r.reverseTopologicalPowerOrder(powerSet)
	if err != nil {
		return nil, err
	}

	// 2. Iterative auth checks from the unconflicted state map (v2) or from
	//    an empty map (v2.1).
	partial := StateMap{}
	if !r.v21 {
		partial = cloneState(unconflicted)
	}
	if err := r.iterativeAuthChecks(partial, powerOrdered); err != nil {
		return nil, fmt.Errorf("power events: %w", err)
	}

	// 3. The remaining events in mainline order of the resolved power levels.
	var others []id.EventID
	for _, eventID := range full {
		if _, ok := powerSet[eventID]; !ok {
			others = append(others, eventID)
		}
	}
	mainlineOrdered, err := r.mainlineOrder(partial[powerLevelsKey], others)
	if err != nil {
		return nil, err
	}

	// 4. Iterative auth checks on the partially resolved state.
	if err := r.iterativeAuthChecks(partial, mainlineOrdered); err != nil {
		return nil, fmt.Errorf("other events: %w", err)
	}

	// 5. The unconflicted state map wins over anything resolved.
	for key, eventID := range unconflicted {
		partial[key] = eventID
	}
	return partial, nil
}

// fullConflictedSet is the conflicted state set, the auth difference and,
// for v2.1, the conflicted state subgraph, sorted by event ID.
func (r *resolution) fullConflictedSet(states []StateMap, conflicted []id.EventID) ([]id.EventID, error) {
	full := make(map[id.EventID]struct{}, len(conflicted))
	for _, eventID := range conflicted {
		full[eventID] = struct{}{}
	}
	sets := make([][]id.EventID, len(states))
	for i, state := range states {
		sets[i] = stateIDs(state)
	}
	difference, err := r.index.AuthDifference(r.ctx, sets)
	if err != nil {
		return nil, fmt.Errorf("auth difference: %w", err)
	}
	for _, eventID := range difference {
		full[eventID] = struct{}{}
	}
	if r.v21 {
		subgraph, err := r.index.ConflictedSubgraph(r.ctx, conflicted)
		if err != nil {
			return nil, fmt.Errorf("conflicted state subgraph: %w", err)
		}
		for _, eventID := range subgraph {
			full[eventID] = struct{}{}
		}
	}
	return sortedIDs(full), nil
}

// powerSet selects the power events of the full conflicted set and adds the
// events of their auth chains that also belong to the full conflicted set.
func (r *resolution) powerSet(full []id.EventID) (map[id.EventID]struct{}, error) {
	fullSet := make(map[id.EventID]struct{}, len(full))
	var power []id.EventID
	for _, eventID := range full {
		fullSet[eventID] = struct{}{}
		if isPowerEvent(r.events.get(eventID)) {
			power = append(power, eventID)
		}
	}
	set := make(map[id.EventID]struct{}, len(power))
	if len(power) == 0 {
		return set, nil
	}
	for _, eventID := range power {
		set[eventID] = struct{}{}
	}
	chain, err := r.index.AuthChain(r.ctx, power)
	if err != nil {
		return nil, fmt.Errorf("auth chain of power events: %w", err)
	}
	for _, eventID := range chain {
		if _, ok := fullSet[eventID]; ok {
			set[eventID] = struct{}{}
		}
	}
	return set, nil
}

var (
	createKey      = StateKey{Type: event.StateCreate.Type}
	powerLevelsKey = StateKey{Type: event.StatePowerLevels.Type}
)

// isPowerEvent reports whether evt might remove someone's ability to do
// something: power levels, join rules, and kicks and bans.
func isPowerEvent(evt *pdu.PDU) bool {
	if evt == nil || evt.StateKey == nil {
		return false
	}
	switch evt.Type {
	case event.StatePowerLevels.Type, event.StateJoinRules.Type:
		return *evt.StateKey == ""
	case event.StateMember.Type:
		if *evt.StateKey == evt.Sender.String() {
			return false
		}
		membership := gjson.GetBytes(evt.Content, "membership").Str
		return membership == string(event.MembershipLeave) || membership == string(event.MembershipBan)
	}
	return false
}

func stateIDs(state StateMap) []id.EventID {
	ids := make([]id.EventID, 0, len(state))
	for _, eventID := range state {
		ids = append(ids, eventID)
	}
	return ids
}

func sortedIDs(set map[id.EventID]struct{}) []id.EventID {
	ids := make([]id.EventID, 0, len(set))
	for eventID := range set {
		ids = append(ids, eventID)
	}
	slices.Sort(ids)
	return ids
}

func cloneState(state StateMap) StateMap {
	out := make(StateMap, len(state))
	for key, eventID := range state {
		out[key] = eventID
	}
	return out
}
