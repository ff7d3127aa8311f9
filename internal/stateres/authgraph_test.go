package stateres

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// countingLoader is an EventLoader that counts the events asked of it.
type countingLoader struct {
	events EventMap
	asked  int
}

func (l *countingLoader) LoadEvents(ctx context.Context, ids []id.EventID) ([]*pdu.PDU, error) {
	l.asked += len(ids)
	return l.events.LoadEvents(ctx, ids)
}

// TestAuthGraphAgreesWithWalk answers every AuthIndex question on randomly
// forked rooms both with an AuthGraph (shared across the rooms, smaller
// than they are together, so it starts afresh on the way) and by walking,
// and compares; the resolved states agree too. Asked again, a graph loads
// nothing: it remembers every event's auth_events.
func TestAuthGraphAgreesWithWalk(t *testing.T) {
	ctx := context.Background()
	graph := NewAuthGraph(150)
	for _, version := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, 3))
			b, forks := randomRoom(t, version, rng, 4, 40)
			states := forkStates(forks)
			sets := make([][]id.EventID, len(states))
			for i, state := range states {
				sets[i] = stateIDs(state)
			}
			_, conflicted := splitStates(states)
			walk := WalkIndex{Events: b.events}
			shared := graph.Index(b.events)
			loader := &countingLoader{events: b.events}
			fresh := NewAuthGraph(10_000).Index(loader)
			for round, cached := range []AuthIndex{shared, fresh, fresh} {
				if round == 2 {
					loader.asked = 0
				}
				compareIDs(t, "auth difference", walk.AuthDifference, cached.AuthDifference, ctx, sets)
				compareIDs(t, "auth chain", func(ctx context.Context, _ [][]id.EventID) ([]id.EventID, error) {
					return walk.AuthChain(ctx, conflicted)
				}, func(ctx context.Context, _ [][]id.EventID) ([]id.EventID, error) {
					return cached.AuthChain(ctx, conflicted)
				}, ctx, sets)
				compareIDs(t, "conflicted subgraph", func(ctx context.Context, _ [][]id.EventID) ([]id.EventID, error) {
					return walk.ConflictedSubgraph(ctx, conflicted)
				}, func(ctx context.Context, _ [][]id.EventID) ([]id.EventID, error) {
					return cached.ConflictedSubgraph(ctx, conflicted)
				}, ctx, sets)
			}
			if loader.asked != 0 {
				t.Errorf("v%s seed %d: asked again, the graph loaded %d events", version, seed, loader.asked)
			}
			want, err := Resolver{Events: b.events}.Resolve(ctx, version, states)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Resolver{Events: b.events, Index: shared}.Resolve(ctx, version, states)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, want) {
				t.Errorf("v%s seed %d: resolved with the graph\n%v\nby walking\n%v", version, seed, got, want)
			}
		}
	}
}

func compareIDs(t *testing.T, what string, walk, cached func(context.Context, [][]id.EventID) ([]id.EventID, error), ctx context.Context, sets [][]id.EventID) {
	t.Helper()
	want, err := walk(ctx, sets)
	if err != nil {
		t.Fatalf("%s by walking: %v", what, err)
	}
	got, err := cached(ctx, sets)
	if err != nil {
		t.Fatalf("%s from the graph: %v", what, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s from the graph\n%v\nby walking\n%v", what, got, want)
	}
}

// TestAuthGraphMissingEvent reports an event it cannot load as
// ErrEventNotFound, as walking does.
func TestAuthGraphMissingEvent(t *testing.T) {
	index := NewAuthGraph(100).Index(EventMap{})
	_, err := index.AuthChain(context.Background(), []id.EventID{"$missing"})
	if err == nil || !errors.Is(err, ErrEventNotFound) {
		t.Fatalf("AuthChain of an unknown event: %v, want ErrEventNotFound", err)
	}
}

// TestAuthGraphAddedEdges builds a graph from what another graph loaded
// (TakeLoaded, as a persistent index would store it) and asks it the same
// questions: it answers as walking does and loads no event.
func TestAuthGraphAddedEdges(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 7))
		b, forks := randomRoom(t, id.RoomV12, rng, 3, 40)
		states := forkStates(forks)
		sets := make([][]id.EventID, len(states))
		for i, state := range states {
			sets[i] = stateIDs(state)
		}
		first := NewAuthGraph(10_000)
		if _, err := first.Index(b.events).AuthDifference(ctx, sets); err != nil {
			t.Fatal(err)
		}
		events, authEvents := first.TakeLoaded()
		if len(events) == 0 {
			t.Fatal("the first graph loaded nothing")
		}
		if again, _ := first.TakeLoaded(); len(again) != 0 {
			t.Fatalf("TakeLoaded again returned %d events", len(again))
		}
		second := NewAuthGraph(10_000)
		for i, eventID := range events {
			second.Add(eventID, authEvents[i])
		}
		loader := &countingLoader{events: b.events}
		compareIDs(t, "auth difference", WalkIndex{Events: b.events}.AuthDifference, second.Index(loader).AuthDifference, ctx, sets)
		if loader.asked != 0 {
			t.Errorf("seed %d: the graph built from added edges loaded %d events", seed, loader.asked)
		}
		if loaded, _ := second.TakeLoaded(); len(loaded) != 0 {
			t.Errorf("seed %d: added edges counted as loaded: %d", seed, len(loaded))
		}
	}
}
