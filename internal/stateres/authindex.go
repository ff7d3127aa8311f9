package stateres

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"
)

// AuthIndex answers the questions state resolution asks about the auth DAG,
// the graph of events joined by their auth_events. A persistent index (a
// chain cover, say) can answer them without walking whole auth chains;
// WalkIndex answers them by walking.
//
// The auth chain of an event is every event reachable from it through
// auth_events links, not counting the event itself.
type AuthIndex interface {
	// AuthChain returns the union of the auth chains of the given events.
	AuthChain(ctx context.Context, events []id.EventID) ([]id.EventID, error)
	// AuthDifference returns the events that are in the full auth chain of
	// some but not all of the given sets of events, the full auth chain of a
	// set being the union of the auth chains of its events.
	AuthDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error)
	// ConflictedSubgraph returns the events that lie on an auth_events path
	// from one of the given events to one of the given events, both ends
	// included.
	ConflictedSubgraph(ctx context.Context, conflicted []id.EventID) ([]id.EventID, error)
}

// WalkIndex is the AuthIndex that walks auth_events of events loaded
// through an EventLoader. Its cost grows with the size of the auth chains
// involved.
type WalkIndex struct {
	Events EventLoader
}

var _ AuthIndex = WalkIndex{}

// AuthChain implements AuthIndex.
func (w WalkIndex) AuthChain(ctx context.Context, events []id.EventID) ([]id.EventID, error) {
	chain, err := w.chain(ctx, events)
	if err != nil {
		return nil, err
	}
	return sortedIDs(chain), nil
}

// AuthDifference implements AuthIndex.
func (w WalkIndex) AuthDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	seenIn := map[id.EventID]int{}
	for _, set := range sets {
		chain, err := w.chain(ctx, set)
		if err != nil {
			return nil, err
		}
		for eventID := range chain {
			seenIn[eventID]++
		}
	}
	difference := map[id.EventID]struct{}{}
	for eventID, count := range seenIn {
		if count < len(sets) {
			difference[eventID] = struct{}{}
		}
	}
	return sortedIDs(difference), nil
}

// ConflictedSubgraph implements AuthIndex: the events reachable from the
// conflicted events through auth_events from which a conflicted event is
// reachable in turn.
func (w WalkIndex) ConflictedSubgraph(ctx context.Context, conflicted []id.EventID) ([]id.EventID, error) {
	// citedBy holds the reversed auth edges among the events reachable from
	// the conflicted ones, conflicted events included.
	citedBy := map[id.EventID][]id.EventID{}
	reachable := map[id.EventID]struct{}{}
	for _, eventID := range conflicted {
		reachable[eventID] = struct{}{}
	}
	err := w.walk(ctx, conflicted, func(eventID id.EventID, authEvents []id.EventID) {
		for _, authID := range authEvents {
			citedBy[authID] = append(citedBy[authID], eventID)
			reachable[authID] = struct{}{}
		}
	})
	if err != nil {
		return nil, err
	}
	subgraph := make(map[id.EventID]struct{}, len(conflicted))
	queue := slices.Clone(conflicted)
	for _, eventID := range conflicted {
		subgraph[eventID] = struct{}{}
	}
	for len(queue) > 0 {
		eventID := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, citer := range citedBy[eventID] {
			if _, ok := subgraph[citer]; ok {
				continue
			}
			subgraph[citer] = struct{}{}
			queue = append(queue, citer)
		}
	}
	return sortedIDs(subgraph), nil
}

// chain is the union of the auth chains of the given events.
func (w WalkIndex) chain(ctx context.Context, events []id.EventID) (map[id.EventID]struct{}, error) {
	chain := map[id.EventID]struct{}{}
	err := w.walk(ctx, events, func(_ id.EventID, authEvents []id.EventID) {
		for _, authID := range authEvents {
			chain[authID] = struct{}{}
		}
	})
	return chain, err
}

// walk visits the given events and every event in their auth chains once,
// breadth first, loading each frontier in one call to the loader; visit
// gets each event's ID and auth_events.
func (w WalkIndex) walk(ctx context.Context, start []id.EventID, visit func(id.EventID, []id.EventID)) error {
	seen := make(map[id.EventID]struct{}, len(start))
	frontier := make([]id.EventID, 0, len(start))
	for _, eventID := range start {
		if _, ok := seen[eventID]; !ok {
			seen[eventID] = struct{}{}
			frontier = append(frontier, eventID)
		}
	}
	for len(frontier) > 0 {
		events, err := w.Events.LoadEvents(ctx, frontier)
		if err != nil {
			return fmt.Errorf("walk auth chains: %w", err)
		}
		if len(events) != len(frontier) {
			return fmt.Errorf("walk auth chains: asked for %d events, got %d", len(frontier), len(events))
		}
		var next []id.EventID
		for i, evt := range events {
			if evt == nil {
				return fmt.Errorf("walk auth chains: %w: %s", ErrEventNotFound, frontier[i])
			}
			visit(frontier[i], evt.AuthEvents)
			for _, authID := range evt.AuthEvents {
				if _, ok := seen[authID]; !ok {
					seen[authID] = struct{}{}
					next = append(next, authID)
				}
			}
		}
		frontier = next
	}
	return nil
}
