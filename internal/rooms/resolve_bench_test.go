package rooms

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/cputime"
)

// BenchmarkResolveStoredForks is state resolution as the engine runs it,
// with events read through the engine (its event cache, then the
// database): a room of 1,000 members on server a, joined by bob of server
// b; while apart, every member on a changes their display name and bob sets
// 1,000 state keys on b; b's side then reaches a (one gap, filled through
// /state_ids). Each iteration resolves the states after the two sides'
// heads on a, as a does for every event it receives while both sides are
// forward extremities. "cold" forgets the cached events and the room's auth
// graph first (a room bigger than the caches, or one not touched for a
// while).
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench ResolveStoredForks -benchtime 10x -count 3 ./internal/rooms/
func BenchmarkResolveStoredForks(b *testing.B) {
	ctx := context.Background()
	n := newFedNet(b, "a", "b")
	a := n.e("a")
	roomID := createFedRoom(b, a, id.RoomV11, aliceA)
	members := make([]Proto, 1000)
	for i := range members {
		members[i] = memberProto(id.UserID(fmt.Sprintf("@member%d:a", i)), "join")
	}
	if _, err := a.SendMany(ctx, roomID, members); err != nil {
		b.Fatal(err)
	}
	n.join("a", "b", roomID, bobB)
	renames := make([]Proto, len(members))
	for i := range renames {
		user := id.UserID(fmt.Sprintf("@member%d:a", i))
		renames[i] = stateProto(user, "m.room.member", user.String(), fmt.Sprintf(`{"membership":"join","displayname":"member %d"}`, i))
	}
	aSide, err := a.SendMany(ctx, roomID, renames)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]Proto, 1000)
	for i := range keys {
		keys[i] = stateProto(bobB, "org.example.state", fmt.Sprint("k", i), `{"side":"b"}`)
	}
	bSide, err := n.e("b").SendMany(ctx, roomID, keys)
	if err != nil {
		b.Fatal(err)
	}
	n.deliver("b", bSide[len(bSide)-1], "a")
	heads, err := a.Events(ctx, []id.EventID{aSide[len(aSide)-1].ID, bSide[len(bSide)-1].ID})
	if err != nil || len(heads) != 2 {
		b.Fatalf("heads on a: %v (%d found)", err, len(heads))
	}
	states, _, err := a.stateAfterEvents(ctx, heads)
	if err != nil {
		b.Fatal(err)
	}
	room, err := a.room(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			meter := cputime.Start()
			for b.Loop() {
				if cold {
					b.StopTimer()
					a.cache = newEventCache(a.cache.max)
					a.graphs.drop(roomID)
					b.StartTimer()
				}
				if _, err := a.resolve(ctx, room, states, nil); err != nil {
					b.Fatal(err)
				}
			}
			meter.Report(b, b.N)
		})
	}
}
