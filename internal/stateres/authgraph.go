package stateres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"
)

// AuthGraph is an in-memory auth-chain index: it remembers the auth_events
// of every event it has loaded, under small integer numbers, so that the
// auth chains of a room's state are walked in memory, without loading or
// parsing any event a second time. Keep one per room (event IDs are the
// events' reference hashes, so an event's auth_events never change) and
// hand it to each resolution through [AuthGraph.Index].
//
// It holds at most about Max events: a query that finds it fuller starts
// it afresh. It is safe for concurrent use; queries run one at a time.
type AuthGraph struct {
	// Max bounds the number of events remembered.
	Max int

	size atomic.Int64 // len(eventIDs), read without mu

	mu       sync.Mutex
	numbers  map[id.EventID]int32
	eventIDs []id.EventID
	// authEvents holds each event's auth_events; loaded says whether
	// they are known yet (an event is numbered as soon as it is cited).
	authEvents [][]int32
	loaded     []bool
	// fresh numbers the events loaded through an EventLoader since the
	// last TakeLoaded (not those given to Add).
	fresh []int32
	// block is where the auth_events slices are cut from (alloc).
	block []int32
}

// NewAuthGraph returns an empty AuthGraph holding at most max events.
func NewAuthGraph(max int) *AuthGraph {
	return &AuthGraph{Max: max}
}

// Len returns the number of events the graph knows of. It does not wait
// for a query in progress.
func (g *AuthGraph) Len() int {
	return int(g.size.Load())
}

// Add tells the graph the auth_events of an event, as a persistent index
// of a room's auth edges knows them, so that no query loads the event.
// It does nothing for an event whose auth_events the graph knows, or once
// the graph holds Max events.
func (g *AuthGraph) Add(event id.EventID, authEvents []id.EventID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.numbers == nil {
		g.numbers = map[id.EventID]int32{}
	}
	if len(g.eventIDs) >= g.Max {
		return
	}
	n := g.numberOf(event)
	if g.loaded[n] {
		return
	}
	numbers := g.alloc(len(authEvents))
	for _, authID := range authEvents {
		authN, ok := g.numbers[authID]
		if !ok {
			// The caller's strings may be parts of a longer one (a row
			// read from a database): keep a copy of just the ID.
			authN = g.numberOf(id.EventID(strings.Clone(string(authID))))
		}
		numbers = append(numbers, authN)
	}
	g.authEvents[n], g.loaded[n] = uniqueNumbers(numbers), true
}

// TakeLoaded returns the events whose auth_events the graph loaded through
// an EventLoader since the last call, with their auth_events: what a
// persistent index lacked, for the caller to add to it.
func (g *AuthGraph) TakeLoaded() ([]id.EventID, [][]id.EventID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	events := make([]id.EventID, len(g.fresh))
	authEvents := make([][]id.EventID, len(g.fresh))
	for i, n := range g.fresh {
		events[i] = g.eventIDs[n]
		authEvents[i] = make([]id.EventID, len(g.authEvents[n]))
		for j, authN := range g.authEvents[n] {
			authEvents[i][j] = g.eventIDs[authN]
		}
	}
	g.fresh = nil
	return events, authEvents
}

// Index returns the AuthIndex that answers from the graph, loading through
// events the events the graph has not seen yet.
func (g *AuthGraph) Index(events EventLoader) AuthIndex {
	return graphIndex{graph: g, events: events}
}

type graphIndex struct {
	graph  *AuthGraph
	events EventLoader
}

var _ AuthIndex = graphIndex{}

// AuthChain implements AuthIndex.
func (x graphIndex) AuthChain(ctx context.Context, events []id.EventID) ([]id.EventID, error) {
	g := x.graph
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resetIfFull()
	start := g.number(events)
	var chain []int32
	err := g.walk(ctx, x.events, start, func(_ int32, authEvents []int32) {
		chain = append(chain, authEvents...)
	})
	if err != nil {
		return nil, err
	}
	return g.sortedIDs(chain), nil
}

// AuthDifference implements AuthIndex.
func (x graphIndex) AuthDifference(ctx context.Context, sets [][]id.EventID) ([]id.EventID, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	g := x.graph
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resetIfFull()
	starts := make([][]int32, len(sets))
	for i, set := range sets {
		starts[i] = g.number(set)
	}
	// inChains counts the sets whose full auth chain holds each event;
	// lastSet stops an event being counted twice for one set.
	var inChains, lastSet []int32
	for i, start := range starts {
		set := int32(i + 1)
		err := g.walk(ctx, x.events, start, func(_ int32, authEvents []int32) {
			for len(inChains) < len(g.eventIDs) {
				inChains, lastSet = append(inChains, 0), append(lastSet, 0)
			}
			for _, n := range authEvents {
				if lastSet[n] != set {
					lastSet[n] = set
					inChains[n]++
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	var difference []int32
	for n, count := range inChains {
		if count > 0 && int(count) < len(sets) {
			difference = append(difference, int32(n))
		}
	}
	return g.sortedIDs(difference), nil
}

// ConflictedSubgraph implements AuthIndex: the events reachable from the
// conflicted events through auth_events from which a conflicted event is
// reachable in turn.
func (x graphIndex) ConflictedSubgraph(ctx context.Context, conflicted []id.EventID) ([]id.EventID, error) {
	g := x.graph
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resetIfFull()
	start := g.number(conflicted)
	citedBy := map[int32][]int32{}
	err := g.walk(ctx, x.events, start, func(n int32, authEvents []int32) {
		for _, authN := range authEvents {
			citedBy[authN] = append(citedBy[authN], n)
		}
	})
	if err != nil {
		return nil, err
	}
	inSubgraph := make(map[int32]bool, len(start))
	for _, n := range start {
		inSubgraph[n] = true
	}
	subgraph := slices.Clone(start)
	for queue := slices.Clone(start); len(queue) > 0; {
		n := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, citer := range citedBy[n] {
			if !inSubgraph[citer] {
				inSubgraph[citer] = true
				subgraph = append(subgraph, citer)
				queue = append(queue, citer)
			}
		}
	}
	return g.sortedIDs(subgraph), nil
}

// resetIfFull forgets everything once the graph holds more than Max
// events.
func (g *AuthGraph) resetIfFull() {
	if g.numbers != nil && len(g.eventIDs) <= g.Max {
		return
	}
	g.numbers = map[id.EventID]int32{}
	g.eventIDs, g.authEvents, g.loaded, g.fresh, g.block = nil, nil, nil, nil, nil
	g.size.Store(0)
}

// number returns the numbers of the events, numbering those not seen yet.
func (g *AuthGraph) number(events []id.EventID) []int32 {
	out := make([]int32, len(events))
	for i, eventID := range events {
		out[i] = g.numberOf(eventID)
	}
	return out
}

func (g *AuthGraph) numberOf(eventID id.EventID) int32 {
	if n, ok := g.numbers[eventID]; ok {
		return n
	}
	n := int32(len(g.eventIDs))
	g.numbers[eventID] = n
	g.eventIDs = append(g.eventIDs, eventID)
	g.authEvents = append(g.authEvents, nil)
	g.loaded = append(g.loaded, false)
	g.size.Store(int64(len(g.eventIDs)))
	return n
}

// walk visits the given events and every event in their auth chains once,
// breadth first; visit gets each event's number and its auth_events'.
// Events whose auth_events the graph does not know yet are loaded, one
// call to the loader per frontier.
func (g *AuthGraph) walk(ctx context.Context, events EventLoader, start []int32, visit func(int32, []int32)) error {
	seen := make(map[int32]struct{}, len(start))
	frontier := make([]int32, 0, len(start))
	for _, n := range start {
		if _, ok := seen[n]; !ok {
			seen[n] = struct{}{}
			frontier = append(frontier, n)
		}
	}
	for len(frontier) > 0 {
		if err := g.load(ctx, events, frontier); err != nil {
			return err
		}
		var next []int32
		for _, n := range frontier {
			authEvents := g.authEvents[n]
			visit(n, authEvents)
			for _, authN := range authEvents {
				if _, ok := seen[authN]; !ok {
					seen[authN] = struct{}{}
					next = append(next, authN)
				}
			}
		}
		frontier = next
	}
	return nil
}

// load learns the auth_events of those of the events not loaded yet.
func (g *AuthGraph) load(ctx context.Context, events EventLoader, numbers []int32) error {
	var missing []id.EventID
	var missingN []int32
	for _, n := range numbers {
		if !g.loaded[n] {
			missing = append(missing, g.eventIDs[n])
			missingN = append(missingN, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	loaded, err := events.LoadEvents(ctx, missing)
	if err != nil {
		return fmt.Errorf("walk auth chains: %w", err)
	}
	if len(loaded) != len(missing) {
		return fmt.Errorf("walk auth chains: asked for %d events, got %d", len(missing), len(loaded))
	}
	for i, evt := range loaded {
		if evt == nil {
			return fmt.Errorf("walk auth chains: %w: %s", ErrEventNotFound, missing[i])
		}
		n := missingN[i]
		g.authEvents[n], g.loaded[n] = g.numbersOf(evt.AuthEvents), true
		g.fresh = append(g.fresh, n)
	}
	return nil
}

// numbersOf returns the numbers of the auth events, each once.
func (g *AuthGraph) numbersOf(authEvents []id.EventID) []int32 {
	out := g.alloc(len(authEvents))
	for _, authID := range authEvents {
		out = append(out, g.numberOf(authID))
	}
	return uniqueNumbers(out)
}

// alloc returns an empty slice of capacity n for an event's auth_events,
// cut from a shared block: one allocation for many events, not one each.
func (g *AuthGraph) alloc(n int) []int32 {
	if cap(g.block)-len(g.block) < n {
		g.block = make([]int32, 0, max(n, 4096))
	}
	start := len(g.block)
	g.block = g.block[:start+n]
	return g.block[start : start : start+n]
}

// uniqueNumbers sorts numbers and drops repeats, in place.
func uniqueNumbers(numbers []int32) []int32 {
	slices.Sort(numbers)
	return slices.Compact(numbers)
}

// sortedIDs returns the event IDs of the numbers, without repeats, sorted.
func (g *AuthGraph) sortedIDs(numbers []int32) []id.EventID {
	slices.Sort(numbers)
	numbers = slices.Compact(numbers)
	out := make([]id.EventID, len(numbers))
	for i, n := range numbers {
		out[i] = g.eventIDs[n]
	}
	slices.Sort(out)
	return out
}
