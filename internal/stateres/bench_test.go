package stateres

import (
	"context"
	"fmt"
	"testing"

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
			b.ResetTimer()
			for b.Loop() {
				if _, err := resolver.Resolve(context.Background(), version, states); err != nil {
					b.Fatal(err)
				}
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
