package stateres

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestIterativeAuthChecksStartFromEmptyState builds the same history in
// room versions 11 and 12: bob, a moderator, changes the power levels on one
// side while alice changes them on the other, and alice's later ban of bob
// is in both states. State resolution v2 checks bob's change against the
// unconflicted state, where bob is already banned, and drops it; v2.1
// (MSC4297) starts from an empty state map, checks bob's change against the
// membership in its own auth events, and keeps it.
func TestIterativeAuthChecksStartFromEmptyState(t *testing.T) {
	for _, tc := range []struct {
		version id.RoomVersion
		wantBob bool // whether bob's power levels win
	}{
		{id.RoomV11, false},
		{id.RoomV12, true},
	} {
		t.Run(string(tc.version), func(t *testing.T) {
			b, base := publicRoom(t, tc.version, 0)
			bobs := base.branch()
			bobs.mustSend(alice, event.StatePowerLevels.Type, "", levels(tc.version, map[id.UserID]int{bob: 90}))
			bobsLevels := bobs.mustSend(bob, event.StatePowerLevels.Type, "", levels(tc.version, map[id.UserID]int{bob: 90, charlie: 50}))
			ban := bobs.mustSend(alice, event.StateMember.Type, bob.String(), map[string]any{"membership": "ban"})

			alices := base.branch()
			alicesLevels := alices.mustSend(alice, event.StatePowerLevels.Type, "", levels(tc.version, map[id.UserID]int{bob: 90, dave: 10}))
			// The other side has heard of the ban too.
			alices.state[memberKey(bob)] = ban

			resolved := b.resolve(bobs, alices)
			want := alicesLevels
			if tc.wantBob {
				want = bobsLevels
			}
			if resolved[powerLevelsKey] != want {
				t.Errorf("power levels = %s, want %s (bob's %s, alice's %s)", resolved[powerLevelsKey], want, bobsLevels, alicesLevels)
			}
			if resolved[memberKey(bob)] != ban {
				t.Errorf("bob's membership = %s, want the ban %s", resolved[memberKey(bob)], ban)
			}
		})
	}
}

// withoutSubgraph is an AuthIndex that never finds a conflicted state
// subgraph, to show what the subgraph changes.
type withoutSubgraph struct{ WalkIndex }

func (withoutSubgraph) ConflictedSubgraph(_ context.Context, conflicted []id.EventID) ([]id.EventID, error) {
	return conflicted, nil
}

// TestConflictedStateSubgraph: one state is a reset of the other's power
// levels to an older event. The power levels that made bob an admin lie on
// the auth path between the two conflicted power levels events and are in
// every auth chain, so only the conflicted state subgraph (v2.1) brings them
// into the resolution; without it, bob's newer power levels are checked
// against the old ones, where bob has no power, and lost.
func TestConflictedStateSubgraph(t *testing.T) {
	b, base := publicRoom(t, id.RoomV12, 0)
	main := base.branch()
	old := main.mustSend(alice, event.StatePowerLevels.Type, "", levels(id.RoomV12, map[id.UserID]int{charlie: 10}))
	promotion := main.mustSend(alice, event.StatePowerLevels.Type, "", levels(id.RoomV12, map[id.UserID]int{bob: 100, charlie: 10}))
	main.mustSend(bob, event.StateTopic.Type, "", map[string]any{"topic": "cites the promotion"})
	newest := main.mustSend(bob, event.StatePowerLevels.Type, "", levels(id.RoomV12, map[id.UserID]int{bob: 100, charlie: 20}))

	reset := main.branch()
	reset.state[powerLevelsKey] = old

	subgraph, err := WalkIndex{Events: b.events}.ConflictedSubgraph(context.Background(), []id.EventID{newest, old})
	if err != nil {
		t.Fatalf("conflicted subgraph: %v", err)
	}
	if want := []id.EventID{old, promotion, newest}; !sameIDs(subgraph, want) {
		t.Errorf("conflicted subgraph = %v, want %v", subgraph, want)
	}

	if resolved := b.resolve(main, reset); resolved[powerLevelsKey] != newest {
		t.Errorf("with the subgraph: power levels = %s, want bob's %s", resolved[powerLevelsKey], newest)
	}
	states := []StateMap{main.state, reset.state}
	resolved, err := Resolver{Events: b.events, Index: withoutSubgraph{WalkIndex{Events: b.events}}}.Resolve(context.Background(), id.RoomV12, states)
	if err != nil {
		t.Fatalf("resolve without subgraph: %v", err)
	}
	if resolved[powerLevelsKey] != old {
		t.Errorf("without the subgraph: power levels = %s, want the old %s", resolved[powerLevelsKey], old)
	}
}

func sameIDs(got, want []id.EventID) bool {
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}
