package rooms

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// The resident's state answers (/state, /state_ids, send_join's state and
// auth chain) are written as streams: the engine settles which events an
// answer lists and in what order from their IDs, depths and auth events
// alone, read a page at a time, and the events' JSON is read again a page
// at a time as the answer is written. What an answer holds at once is
// its IDs, not its events: a big room's answer is hundreds of thousands
// of events.

// answerPage is how many events of a state answer are read at a time.
const answerPage = 256

// StateAnswer is the room's state before an event and its auth chain as
// the federation answers list them: event IDs in depth order (then by
// ID). EachEventJSON reads their events.
type StateAnswer struct {
	State, AuthChain []id.EventID
}

// answerEntry is an event of a state answer as it is ordered.
type answerEntry struct {
	id         id.EventID
	depth      int64
	authEvents []id.EventID
}

// StateAnswerBefore returns the room's state before an event and its
// auth chain (/state, /state_ids, send_join). omitMembers leaves out the
// member events other than the event's own sender's and the heroes' (and
// so their auth chains), and the events of state from the auth chain, as
// MSC3706 allows a joining server to ask.
func (e *Engine) StateAnswerBefore(ctx context.Context, roomID id.RoomID, eventID id.EventID, omitMembers bool) (*StateAnswer, error) {
	state, err := e.stateEntriesBefore(ctx, roomID, eventID, omitMembers)
	if err != nil {
		return nil, err
	}
	chain, err := e.authChainEntries(ctx, state)
	if err != nil {
		return nil, err
	}
	if omitMembers {
		// The reduced answer may leave out of the auth chain what state
		// carries already.
		inState := make(map[id.EventID]bool, len(state))
		for _, en := range state {
			inState[en.id] = true
		}
		chain = slices.DeleteFunc(chain, func(en answerEntry) bool { return inState[en.id] })
	}
	return &StateAnswer{State: entryIDs(state), AuthChain: entryIDs(chain)}, nil
}

// StateIDsBefore returns the IDs of the room's state before an event and
// of its auth chain (/state_ids).
func (e *Engine) StateIDsBefore(ctx context.Context, roomID id.RoomID, eventID id.EventID) (state, authChain []id.EventID, err error) {
	a, err := e.StateAnswerBefore(ctx, roomID, eventID, false)
	if err != nil {
		return nil, nil, err
	}
	return a.State, a.AuthChain, nil
}

// StateBefore is StateAnswerBefore with the events read whole, as PDU
// JSON.
func (e *Engine) StateBefore(ctx context.Context, roomID id.RoomID, eventID id.EventID, omitMembers bool) (state, authChain []json.RawMessage, err error) {
	a, err := e.StateAnswerBefore(ctx, roomID, eventID, omitMembers)
	if err != nil {
		return nil, nil, err
	}
	if state, err = e.eventsJSON(ctx, a.State); err != nil {
		return nil, nil, err
	}
	if authChain, err = e.eventsJSON(ctx, a.AuthChain); err != nil {
		return nil, nil, err
	}
	return state, authChain, nil
}

// AuthChain returns the auth chain of the events (every event reachable
// through auth_events, not the events themselves) as PDU JSON, oldest
// first.
func (e *Engine) AuthChain(ctx context.Context, ids []id.EventID) ([]json.RawMessage, error) {
	start, err := e.answerEntries(ctx, ids, e.anyEventList, nil)
	if err != nil {
		return nil, err
	}
	chain, err := e.authChainEntries(ctx, start)
	if err != nil {
		return nil, err
	}
	return e.eventsJSON(ctx, entryIDs(chain))
}

// EachEventJSON hands the PDU JSON of each event of ids (an answer's
// State or AuthChain) to each, in order, reading answerPage events at a
// time; an event no longer stored is left out.
func (e *Engine) EachEventJSON(ctx context.Context, ids []id.EventID, each func(json.RawMessage) error) error {
	for page := range slices.Chunk(ids, answerPage) {
		evs, err := e.anyEvents(ctx, page)
		if err != nil {
			return err
		}
		for _, eid := range page {
			if ev := evs[eid]; ev != nil {
				if err := each(json.RawMessage(ev.JSON)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// eventsJSON is EachEventJSON into a slice.
func (e *Engine) eventsJSON(ctx context.Context, ids []id.EventID) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ids))
	err := e.EachEventJSON(ctx, ids, func(raw json.RawMessage) error {
		out = append(out, raw)
		return nil
	})
	return out, err
}

// stateEntriesBefore is the state part of StateAnswerBefore, in order.
func (e *Engine) stateEntriesBefore(ctx context.Context, roomID id.RoomID, eventID id.EventID, omitMembers bool) ([]answerEntry, error) {
	ev, err := e.eventAnywhere(ctx, roomID, eventID)
	if err != nil {
		return nil, err
	}
	if ev.Outlier || ev.Backfilled() {
		return nil, mxhttp.NotFound("the state at event %s is not known", eventID)
	}
	ids, _, err := e.snapshotState(ctx, ev.SnapshotBefore)
	if err != nil {
		return nil, err
	}
	var want, members []id.EventID
	for k, v := range ids {
		if omitMembers && k.Type == "m.room.member" && k.StateKey != string(ev.Sender) {
			members = append(members, v)
			continue
		}
		want = append(want, v)
	}
	entries, err := e.answerEntries(ctx, want, e.Events, nil)
	if err != nil {
		return nil, err
	}
	if omitMembers && ids[stateKey{"m.room.name", ""}] == "" && ids[stateKey{"m.room.canonical_alias", ""}] == "" {
		heroes, err := e.heroEntries(ctx, members)
		if err != nil {
			return nil, err
		}
		entries = append(entries, heroes...)
	}
	sortEntries(entries)
	return entries, nil
}

// maxHeroes is the number of heroes of a room summary (the spec's /sync).
const maxHeroes = 5

// heroEntries returns, of the member events given, those of the room's
// heroes: the first joined or invited members, at most maxHeroes. A
// send_join answer that omits members keeps them for a room with neither
// a name nor a canonical alias, so the joining server can name the room
// (the spec's omit_members).
func (e *Engine) heroEntries(ctx context.Context, members []id.EventID) ([]answerEntry, error) {
	candidates, err := e.answerEntries(ctx, members, e.Events, func(m *Event) bool {
		ms := m.Membership()
		return ms == "join" || ms == "invite"
	})
	if err != nil {
		return nil, err
	}
	sortEntries(candidates)
	return candidates[:min(len(candidates), maxHeroes)], nil
}

// authChainEntries walks auth_events from the given events and returns
// every event reached (the start events only where another reaches them),
// in order, reading the events of each step answerPage at a time.
func (e *Engine) authChainEntries(ctx context.Context, start []answerEntry) ([]answerEntry, error) {
	seen := map[id.EventID]bool{}
	var next []id.EventID
	for _, en := range start {
		next = append(next, en.authEvents...)
	}
	var chain []answerEntry
	for len(next) > 0 {
		var load []id.EventID
		for _, eid := range next {
			if !seen[eid] {
				seen[eid] = true
				load = append(load, eid)
			}
		}
		reached, err := e.answerEntries(ctx, load, e.anyEventList, nil)
		if err != nil {
			return nil, err
		}
		next = next[:0]
		for i := range reached {
			next = append(next, reached[i].authEvents...)
			reached[i].authEvents = nil
		}
		chain = append(chain, reached...)
	}
	sortEntries(chain)
	return chain, nil
}

// answerEntries reads the events of ids answerPage at a time with load
// and returns the entries of those found that keep passes (all when keep
// is nil), in the order found.
func (e *Engine) answerEntries(ctx context.Context, ids []id.EventID, load func(context.Context, []id.EventID) ([]*Event, error), keep func(*Event) bool) ([]answerEntry, error) {
	out := make([]answerEntry, 0, len(ids))
	for page := range slices.Chunk(ids, answerPage) {
		evs, err := load(ctx, page)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if keep == nil || keep(ev) {
				out = append(out, answerEntry{id: ev.ID, depth: ev.Depth, authEvents: ev.PDU.AuthEvents})
			}
		}
	}
	return out, nil
}

// anyEventList is anyEvents as a list in the order of ids, those not
// stored left out.
func (e *Engine) anyEventList(ctx context.Context, ids []id.EventID) ([]*Event, error) {
	found, err := e.anyEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*Event, 0, len(found))
	for _, eid := range ids {
		if ev := found[eid]; ev != nil {
			out = append(out, ev)
		}
	}
	return out, nil
}

// sortEntries orders an answer's events by depth, then by ID.
func sortEntries(entries []answerEntry) {
	slices.SortFunc(entries, func(a, b answerEntry) int {
		return cmp.Or(cmp.Compare(a.depth, b.depth), cmp.Compare(a.id, b.id))
	})
}

func entryIDs(entries []answerEntry) []id.EventID {
	out := make([]id.EventID, len(entries))
	for i, en := range entries {
		out[i] = en.id
	}
	return out
}
