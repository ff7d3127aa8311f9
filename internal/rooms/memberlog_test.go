package rooms

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestMemberChangesFromMemoryAndDatabase: the membership changes of every
// window are the same whether the engine answers them from memory (before
// a restart) or from the database (after one, when its log starts at the
// restart's position), and a window with messages only has none.
func TestMemberChangesFromMemoryAndDatabase(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	r1, _ := createTestRoom(t, env.e, id.RoomV11)
	r2, _ := createTestRoom(t, env.e, id.RoomV11)
	rng := rand.New(rand.NewPCG(1, 2))
	users := []id.UserID{eve, "@dan:test", "@fay:test"}
	positions := []int64{env.db.Visible()}
	var want []MemberChange
	for i := range 30 {
		roomID := []id.RoomID{r1, r2}[rng.IntN(2)]
		u := users[rng.IntN(len(users))]
		proto := textProto(alice, "message")
		switch {
		case rng.IntN(3) == 0:
		case env.e.Membership(u, roomID) == "join":
			proto = memberProto(u, "leave")
		default:
			proto = memberProto(u, "join")
		}
		ev, err := env.e.Send(ctx, roomID, proto)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if proto.Type == "m.room.member" {
			want = append(want, MemberChange{Pos: ev.Pos, RoomID: roomID, UserID: u})
		}
		positions = append(positions, env.db.Visible())
	}
	if len(want) == 0 {
		t.Fatal("no membership change sent")
	}
	inWindow := func(since, to int64) []MemberChange {
		var out []MemberChange
		for _, c := range want {
			if c.Pos > since && c.Pos <= to {
				out = append(out, c)
			}
		}
		return out
	}
	check := func(source string) {
		t.Helper()
		for i, since := range positions {
			for _, to := range positions[i:] {
				got, err := env.e.MemberChanges(ctx, since, to)
				if err != nil {
					t.Fatalf("%s: MemberChanges(%d, %d): %v", source, since, to, err)
				}
				if w := inWindow(since, to); !slices.Equal(got, w) {
					t.Fatalf("%s: MemberChanges(%d, %d) = %v, want %v", source, since, to, got, w)
				}
			}
		}
	}
	check("memory")
	env.reopen()
	check("database")

	// After the restart, new changes come from memory again.
	ev, err := env.e.Send(ctx, r1, memberProto("@gus:test", "join"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.e.MemberChanges(ctx, positions[len(positions)-1], env.db.Visible())
	if err != nil {
		t.Fatal(err)
	}
	if w := []MemberChange{{Pos: ev.Pos, RoomID: r1, UserID: "@gus:test"}}; !slices.Equal(got, w) {
		t.Errorf("after the restart: %v, want %v", got, w)
	}
}

// TestSharesRoom: users share a room when both are joined to or invited in
// it; a left or banned membership does not count.
func TestSharesRoom(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	roomID, _ := createTestRoom(t, env.e, id.RoomV11) // alice and bob joined
	if !env.e.SharesRoom(alice, bob) || !env.e.SharesRoom(bob, alice) {
		t.Fatal("alice and bob, both joined, share no room")
	}
	if env.e.SharesRoom(alice, eve) {
		t.Fatal("eve, never in the room, shares it")
	}
	invite := memberProto(eve, "invite")
	invite.Sender = alice
	if _, err := env.e.Send(ctx, roomID, invite); err != nil {
		t.Fatal(err)
	}
	if !env.e.SharesRoom(eve, bob) {
		t.Error("eve, invited, shares no room with bob")
	}
	if _, err := env.e.Send(ctx, roomID, memberProto(bob, "leave")); err != nil {
		t.Fatal(err)
	}
	if env.e.SharesRoom(alice, bob) {
		t.Error("bob, who left, still shares the room")
	}
}
