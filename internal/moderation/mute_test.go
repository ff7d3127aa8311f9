package moderation_test

import (
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestModerationUserCreatedAtStart: the moderation user exists as soon as
// the node runs, before any room turns protections on, so a room can
// invite it and give it a power level first.
func TestModerationUserCreatedAtStart(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	u, exists, err := n.Accounts.GetUser(t.Context(), n.Moderation.Bot())
	if err != nil {
		t.Fatal(err)
	}
	if !exists || u.PasswordHash != "" {
		t.Fatalf("the moderation user %s: exists %v, has a password %v", n.Moderation.Bot(), exists, u.PasswordHash != "")
	}
	admin := n.RegisterAdmin("admin")
	room := publicRoom(t, admin, "a")
	testnode.Invite(t, admin, room, n.Moderation.Bot())
	wantMembership(t, n, room, n.Moderation.Bot(), "invite")
}

// TestFloodWithoutPowerToMute: with power level 50 (ban, kick and redact
// but not power levels) the moderation user stops a flood with what it
// may do, redacting the flooder's messages and kicking them, and the
// report says it could not mute and what it did instead.
func TestFloodWithoutPowerToMute(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	flooder := n.Register("flooder")
	calm := n.Register("calm")
	mods := modRoom(t, n, admin)
	room := publicRoom(t, admin, "a")
	testnode.Join(t, flooder, room)
	testnode.Join(t, calm, room)
	grant(t, admin, room, n.Moderation.Bot(), 50)
	testnode.SendState(t, admin, room, configType, "", map[string]any{
		"flood": map[string]int{"messages": 3, "seconds": 60}, "moderators_room": mods})
	catchUp(t, n)
	wantMembership(t, n, room, n.Moderation.Bot(), "join")

	hello := testnode.SendText(t, calm, room, "hello")
	var sent []id.EventID
	for i := range 4 {
		sent = append(sent, testnode.SendText(t, flooder, room, "spam "+string(rune('a'+i))))
	}
	catchUp(t, n)

	wantMembership(t, n, room, flooder.UserID, "leave")
	for _, evID := range append(sent, hello) {
		ev, err := n.Rooms.Event(t.Context(), evID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ev.RedactedBy != "", evID != hello; got != want {
			t.Errorf("%s (%s's): redacted %v, want %v", evID, ev.Sender, got, want)
		}
	}
	wantNotice(t, n, admin, mods, string(flooder.UserID)+" flooded "+string(room)+
		", stopped by the flood protection: 4 messages in 60 s (the limit is 3). Could not mute them (the moderation user may not change power levels in "+
		string(room)+": it has power level 50 and needs 100), so instead redacted 4 of their messages and kicked them. They may join again.")
	if _, err := flooder.JoinRoomByID(t.Context(), room); err != nil {
		t.Fatalf("a kicked flooder may not join again: %v", err)
	}
}
