package stateres

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

var randomUsers = []id.UserID{alice, bob, charlie, dave, "@eve:example.org"}

// randomRoom grows a room whose history splits into several forks that
// change power levels, join rules, memberships, topics and other state
// concurrently. Every event passes the auth rules against its own fork's
// state, as it would have on the server that sent it; events the rules
// refuse are not added.
func randomRoom(tb testing.TB, version id.RoomVersion, rng *rand.Rand, maxForks, steps int) (*roomBuilder, []*fork) {
	return growRandomRoom(tb, version, rng, maxForks, steps, randomAction)
}

func growRandomRoom(tb testing.TB, version id.RoomVersion, rng *rand.Rand, maxForks, steps int, action func(*fork, *rand.Rand)) (*roomBuilder, []*fork) {
	tb.Helper()
	b := newRoomBuilder(tb, version)
	base := b.create(alice)
	base.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 75, charlie: 50}))
	base.mustSend(alice, event.StateJoinRules.Type, "", map[string]any{"join_rule": "public"})
	for _, user := range randomUsers[1:] {
		base.mustSend(user, event.StateMember.Type, user.String(), member("join"))
	}
	forks := []*fork{base.branch(), base.branch()}
	for range steps {
		if len(forks) < maxForks && rng.IntN(8) == 0 {
			forks = append(forks, forks[rng.IntN(len(forks))].branch())
		}
		action(forks[rng.IntN(len(forks))], rng)
	}
	return b, forks
}

// randomAction sends one random state event on the fork, if the auth rules
// allow it.
func randomAction(f *fork, rng *rand.Rand) {
	version := f.room.version
	sender := randomUsers[rng.IntN(len(randomUsers))]
	target := randomUsers[rng.IntN(len(randomUsers))]
	var evtType, stateKey string
	var content map[string]any
	switch rng.IntN(7) {
	case 0:
		evtType = event.StatePowerLevels.Type
		users := map[id.UserID]int{}
		for _, user := range randomUsers[1:] {
			if rng.IntN(2) == 0 {
				users[user] = []int{0, 10, 50, 75, 100}[rng.IntN(5)]
			}
		}
		content = levels(version, users)
		content["ban"] = []int{25, 50, 75}[rng.IntN(3)]
		content["state_default"] = []int{0, 50}[rng.IntN(2)]
	case 1:
		evtType = event.StateJoinRules.Type
		content = map[string]any{"join_rule": []string{"public", "invite"}[rng.IntN(2)]}
	case 2:
		evtType, stateKey = event.StateMember.Type, sender.String()
		content = member([]string{"join", "leave"}[rng.IntN(2)])
	case 3:
		evtType, stateKey = event.StateMember.Type, target.String()
		content = member([]string{"leave", "ban", "invite"}[rng.IntN(3)])
	case 4:
		evtType = event.StateTopic.Type
		content = map[string]any{"topic": fmt.Sprintf("topic %d", rng.IntN(1000))}
	case 5:
		evtType = event.StateRoomName.Type
		content = map[string]any{"name": fmt.Sprintf("name %d", rng.IntN(1000))}
	default:
		evtType, stateKey = "org.example.state", fmt.Sprintf("k%d", rng.IntN(3))
		content = map[string]any{"n": rng.IntN(1000)}
	}
	_, _ = f.send(sender, evtType, stateKey, content)
}

func forkStates(forks []*fork) []StateMap {
	states := make([]StateMap, len(forks))
	for i, f := range forks {
		states[i] = f.state
	}
	return states
}

// checkResolution checks what holds for every resolution: it does not
// depend on the order of the states, it keeps the unconflicted state, and
// each resolved entry is an event of the room at its own key.
func checkResolution(tb testing.TB, b *roomBuilder, states []StateMap) StateMap {
	tb.Helper()
	resolver := Resolver{Events: b.events}
	resolved, err := resolver.Resolve(context.Background(), b.version, states)
	if err != nil {
		tb.Fatalf("resolve: %v", err)
	}
	reversed := slices.Clone(states)
	slices.Reverse(reversed)
	again, err := resolver.Resolve(context.Background(), b.version, reversed)
	if err != nil {
		tb.Fatalf("resolve reversed: %v", err)
	}
	if !maps.Equal(resolved, again) {
		tb.Fatalf("the order of the states changed the result:\n%v\n%v", resolved, again)
	}
	unconflicted, _ := splitStates(states)
	for key, eventID := range unconflicted {
		if resolved[key] != eventID {
			tb.Fatalf("unconflicted %v = %s, resolved to %s", key, eventID, resolved[key])
		}
	}
	for key, eventID := range resolved {
		evt := b.events[eventID]
		if evt == nil || evt.StateKey == nil || evt.Type != key.Type || *evt.StateKey != key.StateKey {
			tb.Fatalf("resolved %v = %s, which is not a state event for that key", key, eventID)
		}
	}
	return resolved
}

// TestResolveRandomRooms resolves randomly forked rooms of every version
// and checks the properties every resolution has.
func TestResolveRandomRooms(t *testing.T) {
	for _, version := range versions {
		for seed := range uint64(50) {
			rng := rand.New(rand.NewPCG(seed, uint64(len(version))))
			b, forks := randomRoom(t, version, rng, 4, 40)
			checkResolution(t, b, forkStates(forks))
		}
	}
}

// FuzzResolve grows a random forked room from the fuzzer's numbers and
// resolves it: no input may panic, fail, or break checkResolution.
func FuzzResolve(f *testing.F) {
	f.Add(uint64(1), uint8(0), uint8(3), uint8(30))
	f.Add(uint64(7), uint8(3), uint8(2), uint8(60))
	f.Fuzz(func(t *testing.T, seed uint64, versionIndex, maxForks, steps uint8) {
		version := versions[int(versionIndex)%len(versions)]
		rng := rand.New(rand.NewPCG(seed, 0))
		b, forks := randomRoom(t, version, rng, 2+int(maxForks%4), int(steps%100))
		checkResolution(t, b, forkStates(forks))
	})
}
