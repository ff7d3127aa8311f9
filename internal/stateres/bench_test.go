package stateres

import (
	"context"
	"fmt"
	"testing"

	"github.com/matrixos/matrixos/internal/cputime"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// BenchmarkResolveTwoForks resolves two forks that each set the same 1,000
// state keys, with a power levels change every 100 events on each side, so
// 2,000 conflicted state events and 20 conflicted power events.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench ResolveTwoForks ./internal/stateres/
func BenchmarkResolveTwoForks(b *testing.B) {
	for _, version := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		b.Run(string(version), func(b *testing.B) {
			room, base := publicRoomTB(b, version)
			one, two := base.branch(), base.branch()
			for i := range 1000 {
				key := fmt.Sprintf("k%d", i)
				one.mustSend(alice, "org.example.state", key, map[string]any{"side": "one"})
				two.mustSend(bob, "org.example.state", key, map[string]any{"side": "two"})
				if i%100 == 99 {
					one.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 100, charlie: i / 100}))
					two.mustSend(bob, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 100, charlie: i/100 + 10}))
				}
			}
			states := []StateMap{one.state, two.state}
			resolver := Resolver{Events: room.events}
			b.ReportAllocs()
			meter := cputime.Start()
			for b.Loop() {
				if _, err := resolver.Resolve(context.Background(), version, states); err != nil {
					b.Fatal(err)
				}
			}
			meter.Report(b, b.N)
		})
	}
}

// BenchmarkResolveMemberForks resolves the forks issue 9 names: a public
// room of 1,000 members where, on one side, every member changes their
// display name and the power levels change every 100 events and, on the
// other, every member changes their display name differently except every
// 50th, whom bob kicks. That is 1,000 conflicted member events a side and
// 30 conflicted power events, over a state of 1,000 members. "walk" walks
// the auth chains of both states through the events, "graph" answers from
// an AuthGraph that has seen them before.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench ResolveMemberForks -benchtime 20x -count 3 ./internal/stateres/
func BenchmarkResolveMemberForks(b *testing.B) {
	for _, version := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		b.Run(string(version), func(b *testing.B) {
			room, base := publicRoomTB(b, version)
			users := make([]id.UserID, 1000)
			for i := range users {
				users[i] = id.UserID(fmt.Sprintf("@user%d:example.org", i))
				base.mustSend(users[i], event.StateMember.Type, users[i].String(), member("join"))
			}
			one, two := base.branch(), base.branch()
			for i, user := range users {
				one.mustSend(user, event.StateMember.Type, user.String(), map[string]any{"membership": "join", "displayname": fmt.Sprint("one ", i)})
				if i%50 == 49 {
					two.mustSend(bob, event.StateMember.Type, user.String(), member("leave"))
				} else {
					two.mustSend(user, event.StateMember.Type, user.String(), map[string]any{"membership": "join", "displayname": fmt.Sprint("two ", i)})
				}
				if i%100 == 99 {
					one.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 100, charlie: i / 100}))
				}
			}
			states := []StateMap{one.state, two.state}
			for _, index := range []string{"walk", "graph"} {
				b.Run(index, func(b *testing.B) {
					resolver := Resolver{Events: room.events}
					if index == "graph" {
						resolver.Index = NewAuthGraph(100_000).Index(room.events)
					}
					b.ReportAllocs()
					meter := cputime.Start()
					for b.Loop() {
						if _, err := resolver.Resolve(context.Background(), version, states); err != nil {
							b.Fatal(err)
						}
					}
					meter.Report(b, b.N)
				})
			}
		})
	}
}

// publicRoomTB is a public room where alice is the creator, bob an admin and
// charlie a member.
func publicRoomTB(tb testing.TB, version id.RoomVersion) (*roomBuilder, *fork) {
	tb.Helper()
	room := newRoomBuilder(tb, version)
	base := room.create(alice)
	base.mustSend(alice, event.StatePowerLevels.Type, "", levels(version, map[id.UserID]int{bob: 100}))
	base.mustSend(alice, event.StateJoinRules.Type, "", map[string]any{"join_rule": "public"})
	base.mustSend(bob, event.StateMember.Type, bob.String(), member("join"))
	base.mustSend(charlie, event.StateMember.Type, charlie.String(), member("join"))
	return room, base
}
