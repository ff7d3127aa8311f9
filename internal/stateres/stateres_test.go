package stateres

import (
	"context"
	"errors"
	"maps"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const (
	alice   = id.UserID("@alice:example.org")
	bob     = id.UserID("@bob:example.org")
	charlie = id.UserID("@charlie:example.org")
	dave    = id.UserID("@dave:example.org")
)

var (
	topicKey     = StateKey{Type: event.StateTopic.Type}
	joinRulesKey = StateKey{Type: event.StateJoinRules.Type}
)

func memberKey(user id.UserID) StateKey {
	return StateKey{Type: event.StateMember.Type, StateKey: user.String()}
}

// levels is power levels content for version: in room versions with
// privileged creators the creator (alice) must not be listed.
func levels(version id.RoomVersion, users map[id.UserID]int) map[string]any {
	users = maps.Clone(users)
	if users == nil {
		users = map[id.UserID]int{}
	}
	if version.PrivilegedRoomCreators() {
		delete(users, alice)
	} else if _, ok := users[alice]; !ok {
		users[alice] = 100
	}
	return powerLevels(users)
}

// publicRoom starts a public room where alice is the creator and bob (at
// bobLevel) and charlie have joined.
func publicRoom(t *testing.T, version id.RoomVersion, bobLevel int) (*roomBuilder, *fork) {
	t.Helper()
	b := newRoomBuilder(t, version)
	base := b.create(alice)
	base.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: bobLevel}))
	base.mustSend(alice, event.StateJoinRules.Type, "", map[string]any{"join_rule": "public"})
	base.mustSend(bob, event.StateMember.Type, bob.String(), member("join"))
	base.mustSend(charlie, event.StateMember.Type, charlie.String(), member("join"))
	return b, base
}

var versions = []id.RoomVersion{id.RoomV2, id.RoomV6, id.RoomV10, id.RoomV11, id.RoomV12}

// TestResolveScenarios covers the outcomes state resolution exists for, in
// every supported generation of the auth rules.
func TestResolveScenarios(t *testing.T) {
	for _, version := range versions {
		t.Run(string(version), func(t *testing.T) {
			t.Run("ban beats a topic the banned moderator set meanwhile", func(t *testing.T) {
				b, base := publicRoom(t, version, 50)
				original := base.mustSend(alice, event.StateTopic.Type, "", map[string]any{"topic": "original"})
				banned := base.branch()
				ban := banned.mustSend(alice, event.StateMember.Type, bob.String(), map[string]any{"membership": "ban"})
				topical := base.branch()
				topical.mustSend(bob, event.StateTopic.Type, "", map[string]any{"topic": "bob's"})

				resolved := b.resolve(banned, topical)
				if resolved[memberKey(bob)] != ban {
					t.Errorf("bob's membership = %s, want the ban %s", resolved[memberKey(bob)], ban)
				}
				if resolved[topicKey] != original {
					t.Errorf("topic = %s, want the original %s: bob was banned before", resolved[topicKey], original)
				}
			})
			t.Run("demotion beats a kick by the demoted moderator", func(t *testing.T) {
				b, base := publicRoom(t, version, 50)
				demoted := base.branch()
				demotion := demoted.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, nil))
				kicked := base.branch()
				kicked.mustSend(bob, event.StateMember.Type, charlie.String(), member("leave"))

				resolved := b.resolve(demoted, kicked)
				if resolved[powerLevelsKey] != demotion {
					t.Errorf("power levels = %s, want the demotion %s", resolved[powerLevelsKey], demotion)
				}
				if got := b.events[resolved[memberKey(charlie)]]; string(got.Content) != `{"membership":"join"}` {
					t.Errorf("charlie's membership = %s, want still joined", got.Content)
				}
			})
			t.Run("join rules made invite-only refuse a concurrent join", func(t *testing.T) {
				b, base := publicRoom(t, version, 50)
				closed := base.branch()
				inviteOnly := closed.mustSend(alice, event.StateJoinRules.Type, "", map[string]any{"join_rule": "invite"})
				joined := base.branch()
				joined.mustSend(dave, event.StateMember.Type, dave.String(), member("join"))

				resolved := b.resolve(closed, joined)
				if resolved[joinRulesKey] != inviteOnly {
					t.Errorf("join rules = %s, want %s", resolved[joinRulesKey], inviteOnly)
				}
				if eventID, ok := resolved[memberKey(dave)]; ok {
					t.Errorf("dave's join %s is in the resolved state although the room became invite-only", eventID)
				}
			})
			t.Run("mainline order puts the topic against newer power levels last", func(t *testing.T) {
				b, base := publicRoom(t, version, 50)
				newer := base.branch()
				newer.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 50, charlie: 50}))
				newerTopic := newer.mustSend(charlie, event.StateTopic.Type, "", map[string]any{"topic": "newer"})
				older := base.branch()
				// The older fork's topic is sent last by the clock.
				older.mustSend(bob, event.StateTopic.Type, "", map[string]any{"topic": "older"})

				resolved := b.resolve(newer, older)
				if resolved[topicKey] != newerTopic {
					t.Errorf("topic = %s, want %s, the one authorised by the newer power levels", resolved[topicKey], newerTopic)
				}
			})
			t.Run("state sets in any order resolve the same", func(t *testing.T) {
				b, base := publicRoom(t, version, 50)
				one := base.branch()
				one.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 75}))
				one.mustSend(bob, event.StateTopic.Type, "", map[string]any{"topic": "one"})
				two := base.branch()
				two.mustSend(bob, event.StateMember.Type, charlie.String(), map[string]any{"membership": "ban"})
				two.mustSend(bob, event.StateTopic.Type, "", map[string]any{"topic": "two"})
				if forward, backward := b.resolve(one, two), b.resolve(two, one); !maps.Equal(forward, backward) {
					t.Errorf("resolve(one, two) = %v, resolve(two, one) = %v", forward, backward)
				}
			})
		})
	}
}

// TestResolveWithoutConflicts returns the common state without loading any
// event.
func TestResolveWithoutConflicts(t *testing.T) {
	state := StateMap{createKey: "$create", topicKey: "$topic"}
	resolved, err := Resolver{Events: EventMap{}}.Resolve(context.Background(), id.RoomV11, []StateMap{state, maps.Clone(state)})
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if !maps.Equal(resolved, state) {
		t.Errorf("resolved = %v, want %v", resolved, state)
	}
	for _, tc := range []struct {
		states []StateMap
		want   StateMap
	}{
		{nil, StateMap{}},
		{[]StateMap{state}, state},
	} {
		resolved, err := Resolver{Events: EventMap{}}.Resolve(context.Background(), id.RoomV12, tc.states)
		if err != nil {
			t.Fatalf("resolve %d states: %v", len(tc.states), err)
		}
		if !maps.Equal(resolved, tc.want) {
			t.Errorf("resolve %d states = %v, want %v", len(tc.states), resolved, tc.want)
		}
	}
}

// TestResolveErrors: what resolution cannot do is an error, not a guess.
func TestResolveErrors(t *testing.T) {
	b, base := publicRoom(t, id.RoomV11, 50)
	one := base.branch()
	one.mustSend(alice, event.StateTopic.Type, "", map[string]any{"topic": "one"})
	two := base.branch()
	two.mustSend(alice, event.StateTopic.Type, "", map[string]any{"topic": "two"})
	states := []StateMap{one.state, two.state}

	if _, err := (Resolver{Events: b.events}).Resolve(context.Background(), id.RoomV1, states); !errors.Is(err, ErrUnsupportedRoomVersion) {
		t.Errorf("room version 1: err = %v, want ErrUnsupportedRoomVersion", err)
	}
	if _, err := (Resolver{Events: b.events}).Resolve(context.Background(), "bogus", states); !errors.Is(err, ErrUnsupportedRoomVersion) {
		t.Errorf("unknown room version: err = %v, want ErrUnsupportedRoomVersion", err)
	}
	missing := maps.Clone(b.events)
	delete(missing, base.state[memberKey(alice)])
	if _, err := (Resolver{Events: missing}).Resolve(context.Background(), id.RoomV11, states); !errors.Is(err, ErrEventNotFound) {
		t.Errorf("an auth event missing: err = %v, want ErrEventNotFound", err)
	}
}
