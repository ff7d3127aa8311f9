//go:build goolm

package assistant_test

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestAssistantForgetNeedsPower: a member who may not change the room's
// state cannot make the assistant forget the room or leave it; one who
// may, can.
func TestAssistantForgetNeedsPower(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, testnode.WithAssistant)
	alice, bob := n.Register("alice"), n.Register("bob")
	room := plainRoom(t, alice, event.HistoryVisibilityShared)
	testnode.Invite(t, alice, room, bob.UserID)
	testnode.Join(t, bob, room)
	testnode.SendText(t, alice, room, "The release is on March 3rd.")

	for _, cmd := range []string{"!assistant forget keep", "!assistant forget", "!assistant leave"} {
		if got := ask(t, bob, room, cmd); !strings.Contains(got, "only members who may change the room's state") {
			t.Errorf("%q by a member of power 0: %s", cmd, got)
		}
	}
	if got := ask(t, bob, room, "!assistant log"); !strings.Contains(got, "I keep 1 messages") {
		t.Errorf("the assistant forgot at the request of a member of power 0:\n%s", got)
	}
	if m := membership(t, alice, room, assistantID); m != event.MembershipJoin {
		t.Errorf("the assistant's membership is %q, want join", m)
	}
	if got := ask(t, alice, room, "!assistant forget keep"); !strings.Contains(got, "I forgot everything") {
		t.Errorf("forget keep by the room's creator: %s", got)
	}
}
