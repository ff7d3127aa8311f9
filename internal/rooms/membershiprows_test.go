package rooms

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestUserMembershipsFollowChanges checks that a user's membership rows,
// which /sync reads from a cache, follow every change: a leave, a forget,
// a new join and a purge.
func TestUserMembershipsFollowChanges(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t)
	e := env.e
	roomID, _ := createTestRoom(t, e, id.RoomV11)
	check := func(when string, want *MembershipRow) {
		t.Helper()
		for range 2 { // read, then from the cache
			rows, err := e.UserMemberships(ctx, bob)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case want == nil && len(rows) != 0:
				t.Fatalf("%s: rows %+v, want none", when, rows)
			case want != nil && (len(rows) != 1 || rows[0].RoomID != want.RoomID ||
				rows[0].Membership != want.Membership || rows[0].Forgotten != want.Forgotten || rows[0].EventID != want.EventID):
				t.Fatalf("%s: rows %+v, want %+v", when, rows, *want)
			}
		}
	}
	evID, err := e.MembershipEventID(ctx, bob, roomID)
	if err != nil {
		t.Fatal(err)
	}
	check("joined", &MembershipRow{RoomID: roomID, Membership: "join", EventID: evID})
	leave, err := e.Send(ctx, roomID, memberProto(bob, "leave"))
	if err != nil {
		t.Fatal(err)
	}
	check("left", &MembershipRow{RoomID: roomID, Membership: "leave", EventID: leave.ID})
	if err := e.Forget(ctx, bob, roomID); err != nil {
		t.Fatal(err)
	}
	check("forgotten", &MembershipRow{RoomID: roomID, Membership: "leave", EventID: leave.ID, Forgotten: true})
	join, err := e.Send(ctx, roomID, memberProto(bob, "join"))
	if err != nil {
		t.Fatal(err)
	}
	check("joined again", &MembershipRow{RoomID: roomID, Membership: "join", EventID: join.ID})
	if err := e.Purge(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	check("purged", nil)
}
