package stateres

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// powerKey is what the reverse topological power ordering compares: a
// higher sender power level first, then the earlier origin_server_ts, then
// the smaller event ID.
type powerKey struct {
	eventID    id.EventID
	powerLevel int64
	ts         int64
}

func comparePowerKeys(a, b powerKey) int {
	if c := cmp.Compare(b.powerLevel, a.powerLevel); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ts, b.ts); c != 0 {
		return c
	}
	return cmp.Compare(a.eventID, b.eventID)
}

// powerKeyHeap is a min-heap of powerKeys.
type powerKeyHeap []powerKey

func (h powerKeyHeap) Len() int           { return len(h) }
func (h powerKeyHeap) Less(i, j int) bool { return comparePowerKeys(h[i], h[j]) < 0 }
func (h powerKeyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *powerKeyHeap) Push(x any)        { *h = append(*h, x.(powerKey)) }
func (h *powerKeyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// reverseTopologicalPowerOrder sorts the events, earliest first, into the
// lexicographically smallest topological order of the auth DAG among them:
// Kahn's algorithm taking the smallest ready event at each step.
func (r *resolution) reverseTopologicalPowerOrder(set map[id.EventID]struct{}) ([]id.EventID, error) {
	keys := make(map[id.EventID]powerKey, len(set))
	waitingOn := make(map[id.EventID]int, len(set))
	citedBy := make(map[id.EventID][]id.EventID, len(set))
	for eventID := range set {
		evt := r.events.get(eventID)
		level, err := r.senderPowerLevel(evt)
		if err != nil {
			return nil, fmt.Errorf("power level of the sender of %s: %w", eventID, err)
		}
		keys[eventID] = powerKey{eventID: eventID, powerLevel: level, ts: evt.OriginServerTS}
		for _, authID := range uniqueIDs(evt.AuthEvents) {
			if _, ok := set[authID]; ok && authID != eventID {
				waitingOn[eventID]++
				citedBy[authID] = append(citedBy[authID], eventID)
			}
		}
	}
	ready := make(powerKeyHeap, 0, len(set))
	for eventID, key := range keys {
		if waitingOn[eventID] == 0 {
			ready = append(ready, key)
		}
	}
	heap.Init(&ready)
	ordered := make([]id.EventID, 0, len(set))
	for ready.Len() > 0 {
		next := heap.Pop(&ready).(powerKey)
		ordered = append(ordered, next.eventID)
		for _, citer := range citedBy[next.eventID] {
			waitingOn[citer]--
			if waitingOn[citer] == 0 {
				heap.Push(&ready, keys[citer])
			}
		}
	}
	if len(ordered) < len(set) {
		// A cycle in auth_events (possible only with forged event IDs):
		// the events on it go last, in key order, so the result stays
		// deterministic.
		var stuck []powerKey
		for eventID, key := range keys {
			if waitingOn[eventID] > 0 {
				stuck = append(stuck, key)
			}
		}
		slices.SortFunc(stuck, comparePowerKeys)
		for _, key := range stuck {
			ordered = append(ordered, key.eventID)
		}
	}
	return ordered, nil
}

// senderPowerLevel is the power level of evt's sender according to evt's own
// auth_events; in room versions with privileged creators, a creator's is
// above every other.
func (r *resolution) senderPowerLevel(evt *pdu.PDU) (int64, error) {
	if r.version.PrivilegedRoomCreators() {
		create, err := r.createEventOf(evt)
		if err != nil {
			return 0, err
		}
		if isCreator(create, evt.Sender) {
			return math.MaxInt64, nil
		}
	}
	var create *pdu.PDU
	for _, authID := range evt.AuthEvents {
		authEvt, err := r.events.fetch(r.ctx, authID)
		if err != nil {
			return 0, err
		}
		if authEvt.StateKey == nil || *authEvt.StateKey != "" {
			continue
		}
		switch authEvt.Type {
		case event.StatePowerLevels.Type:
			return userPowerLevel(r.version, authEvt.Content, evt.Sender), nil
		case event.StateCreate.Type:
			create = authEvt
		}
	}
	if create != nil && !r.version.PrivilegedRoomCreators() && legacyCreator(r.version, create) == evt.Sender {
		return 100, nil
	}
	return 0, nil
}

// createEventOf returns the create event of evt's room in room versions
// whose room ID is the create event's ID.
func (r *resolution) createEventOf(evt *pdu.PDU) (*pdu.PDU, error) {
	if evt.Type == event.StateCreate.Type {
		return evt, nil
	}
	if !strings.HasPrefix(evt.RoomID.String(), "!") {
		return nil, fmt.Errorf("room ID %q is not a create event's", evt.RoomID)
	}
	return r.events.fetch(r.ctx, id.EventID("$"+evt.RoomID.String()[1:]))
}

// isCreator reports whether user created the room or is one of the
// additional creators of its create event.
func isCreator(create *pdu.PDU, user id.UserID) bool {
	if create.Sender == user {
		return true
	}
	for _, creator := range gjson.GetBytes(create.Content, "additional_creators").Array() {
		if creator.Str == user.String() {
			return true
		}
	}
	return false
}

// legacyCreator is the room's creator before room version 12: the creator
// field of the content until room version 11, the sender from then on.
func legacyCreator(version id.RoomVersion, create *pdu.PDU) id.UserID {
	if version.CreatorInContent() {
		return id.UserID(gjson.GetBytes(create.Content, "creator").Str)
	}
	return create.Sender
}

// userPowerLevel reads a user's level from power levels content: their
// entry in users, else users_default, else 0.
func userPowerLevel(version id.RoomVersion, content []byte, user id.UserID) int64 {
	strict := version.ValidatePowerLevelInts()
	if level, ok := parseLevel(gjson.GetBytes(content, "users."+gjson.Escape(user.String())), strict); ok {
		return level
	}
	if level, ok := parseLevel(gjson.GetBytes(content, "users_default"), strict); ok {
		return level
	}
	return 0
}

// parseLevel reads a power level: a JSON integer, or before room version 10
// also what Python's int() accepts (a numeric string, a boolean).
func parseLevel(value gjson.Result, strict bool) (int64, bool) {
	switch value.Type {
	case gjson.Number:
		return value.Int(), true
	case gjson.String:
		if strict {
			return 0, false
		}
		level, err := strconv.ParseInt(strings.TrimSpace(value.Str), 10, 64)
		return level, err == nil
	case gjson.True:
		return 1, !strict
	case gjson.False:
		return 0, !strict
	}
	return 0, false
}

// mainlineOrder sorts the events by mainline ordering based on the power
// levels event powerLevels (empty when the state has none): events whose
// power levels are earlier in the mainline first, then the earlier
// origin_server_ts, then the smaller event ID.
func (r *resolution) mainlineOrder(powerLevels id.EventID, events []id.EventID) ([]id.EventID, error) {
	if err := r.buildMainline(powerLevels); err != nil {
		return nil, err
	}
	type mainlineKey struct {
		eventID  id.EventID
		position int
		ts       int64
	}
	keys := make([]mainlineKey, len(events))
	for i, eventID := range events {
		evt := r.events.get(eventID)
		position, err := r.mainlinePosition(evt)
		if err != nil {
			return nil, fmt.Errorf("mainline position of %s: %w", eventID, err)
		}
		keys[i] = mainlineKey{eventID: eventID, position: position, ts: evt.OriginServerTS}
	}
	slices.SortFunc(keys, func(a, b mainlineKey) int {
		if c := cmp.Compare(b.position, a.position); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ts, b.ts); c != 0 {
			return c
		}
		return cmp.Compare(a.eventID, b.eventID)
	})
	ordered := make([]id.EventID, len(keys))
	for i, key := range keys {
		ordered[i] = key.eventID
	}
	return ordered, nil
}

// buildMainline records the mainline of powerLevels: it, the power levels
// event in its auth_events, that one's, and so on.
func (r *resolution) buildMainline(powerLevels id.EventID) error {
	r.mainline = map[id.EventID]int{}
	r.mainlinePos = map[id.EventID]int{}
	for position := 0; powerLevels != ""; position++ {
		if _, loop := r.mainline[powerLevels]; loop {
			return fmt.Errorf("power levels %s cites itself through its auth_events", powerLevels)
		}
		r.mainline[powerLevels] = position
		r.mainlinePos[powerLevels] = position
		evt, err := r.events.fetch(r.ctx, powerLevels)
		if err != nil {
			return fmt.Errorf("mainline: %w", err)
		}
		powerLevels, err = r.powerLevelsAuthEvent(evt)
		if err != nil {
			return fmt.Errorf("mainline: %w", err)
		}
	}
	return nil
}

// noMainline is the position of an event whose power levels chain never
// meets the mainline: before every other.
const noMainline = math.MaxInt

// mainlinePosition is the position in the mainline of the first power
// levels event met walking evt's power levels auth events, or noMainline.
// Positions found are cached for the rest of the resolution.
func (r *resolution) mainlinePosition(evt *pdu.PDU) (int, error) {
	var walked []id.EventID
	position := noMainline
	current := evt
	for {
		next, err := r.powerLevelsAuthEvent(current)
		if err != nil {
			return 0, err
		}
		if next == "" {
			break
		}
		if cached, ok := r.mainlinePos[next]; ok {
			position = cached
			break
		}
		if slices.Contains(walked, next) {
			break
		}
		walked = append(walked, next)
		if current, err = r.events.fetch(r.ctx, next); err != nil {
			return 0, err
		}
	}
	for _, eventID := range walked {
		r.mainlinePos[eventID] = position
	}
	return position, nil
}

// powerLevelsAuthEvent returns the ID of the power levels event among evt's
// auth_events, or "".
func (r *resolution) powerLevelsAuthEvent(evt *pdu.PDU) (id.EventID, error) {
	for _, authID := range evt.AuthEvents {
		authEvt, err := r.events.fetch(r.ctx, authID)
		if err != nil {
			return "", err
		}
		if authEvt.Type == event.StatePowerLevels.Type && authEvt.StateKey != nil && *authEvt.StateKey == "" {
			return authID, nil
		}
	}
	return "", nil
}

func uniqueIDs(ids []id.EventID) []id.EventID {
	if len(ids) < 2 {
		return ids
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
