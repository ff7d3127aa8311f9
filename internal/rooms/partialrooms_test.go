package rooms

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"
)

// partialRoomOf returns a public room of a's that carol of c has joined
// with partial state (its resync held), after which members users of a
// joined it, c receiving their joins.
func partialRoomOf(tb testing.TB, n *fedNet, members int) id.RoomID {
	tb.Helper()
	roomID, _, err := n.e("a").CreateRoom(context.Background(), id.RoomV10, aliceA, nil, []Proto{
		memberProto(aliceA, "join"),
		stateProto(aliceA, "m.room.join_rules", "", `{"join_rule":"public"}`),
		stateProto(aliceA, "m.room.name", "", `{"name":"named"}`),
	})
	if err != nil {
		tb.Fatalf("create room: %v", err)
	}
	n.joinPartial("a", "c", roomID, carolC)
	for i := range members {
		ev := n.send("a", roomID, memberProto(id.UserID(fmt.Sprintf("@m%d:a", i)), "join"))
		n.deliver("a", ev, "c")
	}
	return roomID
}

// TestInPartialRoomWith: c, with a room of a's partial, reports a (the
// room's server) and not a server of no partial room; a, whose rooms are
// all complete, reports neither.
func TestInPartialRoomWith(t *testing.T) {
	ctx := context.Background()
	n := newFedNet(t, "a", "c")
	partialRoomOf(t, n, 3)
	for _, c := range []struct {
		engine, server string
		want           bool
	}{
		{"c", "a", true},
		{"c", "elsewhere.example", false},
		{"a", "c", false},
	} {
		if got := n.e(c.engine).InPartialRoomWith(ctx, c.server); got != c.want {
			t.Errorf("%s: InPartialRoomWith(%s) = %v, want %v", c.engine, c.server, got, c.want)
		}
	}
	close(n.stateGate)
}

// BenchmarkInPartialRoomWith is the question HandleDeviceListUpdate asks
// for each device-list update of a user sharing no room with a local
// user, with one partial-state room whose known members number members.
func BenchmarkInPartialRoomWith(b *testing.B) {
	for _, members := range []int{10, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			ctx := context.Background()
			n := newFedNet(b, "a", "c")
			partialRoomOf(b, n, members)
			c := n.e("c")
			b.ReportAllocs()
			for b.Loop() {
				if !c.InPartialRoomWith(ctx, "a") {
					b.Fatal("a is not a server of c's partial room")
				}
			}
			b.StopTimer()
			close(n.stateGate)
		})
	}
}
