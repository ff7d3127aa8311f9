package rooms

import (
	"encoding/json"
	"maps"
	"slices"
	"sync/atomic"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// roomState is a room's state right after one of its events: the current
// state events, their index by event ID, the members, and where the next
// event attaches. It is never modified once built: accepting an event makes
// a new roomState (sharing the maps the event leaves alone), so building and
// authorising an event change nothing, a refused event leaves no trace, and
// readers and hooks may keep one without a lock.
type roomState struct {
	state map[stateKey]*Event
	// byID indexes the current state events by event ID.
	byID map[id.EventID]*Event
	// members maps users to their membership.
	members map[id.UserID]string
	// membership names members and the member events behind it: a new
	// one (see nextMembership) whenever either changes, carried along
	// with members otherwise; 0 for a state made without one.
	membership uint64
	// servers are the servers of the joined members, sorted: derived from
	// members, remade only when a membership changes.
	servers     []string
	extremities []id.EventID
	depth       int64
}

// memberships numbers the member sets of every room's states.
var memberships atomic.Uint64

// nextMembership returns a roomState.membership no state has had.
func nextMembership() uint64 { return memberships.Add(1) }

var emptyState = &roomState{
	state: map[stateKey]*Event{}, byID: map[id.EventID]*Event{}, members: map[id.UserID]string{},
}

// stateOf builds the state made of evs (a room's current state events, as
// loaded from a snapshot) with the given forward extremities and depth.
func stateOf(evs []*Event, extremities []id.EventID, depth int64) *roomState {
	s := &roomState{
		state: make(map[stateKey]*Event, len(evs)), byID: make(map[id.EventID]*Event, len(evs)),
		members: map[id.UserID]string{}, membership: nextMembership(), extremities: extremities, depth: depth,
	}
	for _, ev := range evs {
		k := stateKey{ev.Type, *ev.StateKey}
		s.state[k], s.byID[ev.ID] = ev, ev
		if ev.Type == "m.room.member" {
			s.members[id.UserID(*ev.StateKey)] = ev.Membership()
		}
	}
	s.servers = joinedServers(s.members)
	return s
}

// get returns the current state event for (evType, sk), or nil.
func (s *roomState) get(evType, sk string) *Event { return s.state[stateKey{evType, sk}] }

// with returns the state after ev, an event accepted on top of s, in a room
// of version v.
func (s *roomState) with(v id.RoomVersion, ev *Event) *roomState {
	next := &roomState{
		state: s.state, byID: s.byID, members: s.members, membership: s.membership, servers: s.servers,
		extremities: extremitiesAfter(s.extremities, ev), depth: max(s.depth, ev.Depth),
	}
	var redacted *Event
	if ev.Type == "m.room.redaction" && ev.PDU.Redacts != nil {
		// A redacted state event stays current state, redacted.
		if target, ok := s.byID[*ev.PDU.Redacts]; ok {
			red := *target
			red.PDU = target.PDU.Clone().Redact(v)
			red.RedactedBy = ev.ID
			redacted = &red
		}
	}
	if redacted == nil && ev.StateKey == nil {
		return next
	}
	next.state, next.byID = maps.Clone(s.state), maps.Clone(s.byID)
	if redacted != nil {
		next.set(redacted)
	}
	if ev.StateKey != nil {
		next.set(ev)
	}
	return next
}

// extremitiesAfter returns the forward extremities once ev, whose
// prev_events are among ext, has been accepted: those it does not
// reference, then ev.
func extremitiesAfter(ext []id.EventID, ev *Event) []id.EventID {
	return extremitiesFollowing(ext, ev.ID, ev.PDU.PrevEvents)
}

// extremitiesFollowing returns the forward extremities once the event evID,
// which follows prevs, has been accepted: those of ext not among prevs,
// then evID; at most maxExtremities of them, the oldest dropped.
func extremitiesFollowing(ext []id.EventID, evID id.EventID, prevs []id.EventID) []id.EventID {
	if len(ext) == 1 && len(prevs) == 1 && ext[0] == prevs[0] {
		return []id.EventID{evID} // the straight line
	}
	out := make([]id.EventID, 0, len(ext)+1)
	for _, x := range ext {
		if !slices.Contains(prevs, x) {
			out = append(out, x)
		}
	}
	out = append(out, evID)
	if len(out) > maxExtremities {
		out = out[len(out)-maxExtremities:]
	}
	return out
}

// maxPrevEvents caps the prev_events of a local event, as the PDU format
// caps those of a received one (maxPrevEventsReceived). A room with more
// forward extremities than that resolves the current state step by step
// (acceptInto), so the work of one received event stays bounded.
const maxPrevEvents = 20

// maxExtremities caps the forward extremities a room remembers. Beyond
// maxPrevEvents the current state already carries every fork's state
// (acceptInto), so dropping the oldest loses none; the list stays
// bounded against a server that forks the room with every event.
const maxExtremities = 1000

// maxDepth is the largest depth an event may have (the largest integer
// canonical JSON allows).
const maxDepth = 1<<53 - 1

// prevEventsOf returns the prev_events of an event built on the forward
// extremities ext (kept oldest first): all of them, or the newest
// maxPrevEvents.
func prevEventsOf(ext []id.EventID) []id.EventID {
	if len(ext) > maxPrevEvents {
		ext = ext[len(ext)-maxPrevEvents:]
	}
	if ext == nil {
		return []id.EventID{}
	}
	return slices.Clone(ext)
}

// set makes ev the current state for its key. Only for a roomState that is
// being built: the state maps must be its own, the members map may still be
// shared (set replaces it).
func (s *roomState) set(ev *Event) {
	k := stateKey{ev.Type, *ev.StateKey}
	if old, ok := s.state[k]; ok {
		delete(s.byID, old.ID)
	}
	s.state[k] = ev
	s.byID[ev.ID] = ev
	if ev.Type == "m.room.member" {
		m := maps.Clone(s.members)
		m[id.UserID(*ev.StateKey)] = ev.Membership()
		s.members = m
		s.membership = nextMembership()
		s.servers = joinedServers(m)
	}
}

// powerLevels returns the power levels of the state (with the create event
// attached for creator power).
func (s *roomState) powerLevels() *event.PowerLevelsEventContent {
	pl := &event.PowerLevelsEventContent{}
	create := s.get("m.room.create", "")
	if st := s.get("m.room.power_levels", ""); st != nil {
		json.Unmarshal(st.PDU.Content, pl)
	} else if create != nil {
		// No power levels yet: the creator has 100, everyone else 0.
		pl.Users = map[id.UserID]int{create.Sender: 100}
		zero := 0
		pl.StateDefaultPtr = &zero
	}
	if create != nil {
		ce := &event.Event{Sender: create.Sender, Type: event.StateCreate}
		if err := json.Unmarshal(create.PDU.Content, &ce.Content); err == nil && ce.Content.ParseRaw(ce.Type) == nil {
			pl.CreateEvent = ce
		}
	}
	return pl
}

// joinedServers returns the servers of the users joined in members,
// sorted, each once.
func joinedServers(members map[id.UserID]string) []string {
	var out []string
	for u, m := range members {
		if m != "join" {
			continue
		}
		if _, server, err := u.Parse(); err == nil && !slices.Contains(out, server) {
			out = append(out, server)
		}
	}
	slices.Sort(out)
	return out
}
