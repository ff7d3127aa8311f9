package node

import (
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// TestEventDestinations: an event goes to every server with a joined
// member after it, and a membership event about a remote user to that
// user's server too; invited, left and banned members' servers are not
// destinations by themselves; the server a join came from (send_join's
// answer) is not sent it back (Complement's TestOutboundFederationSend).
func TestEventDestinations(t *testing.T) {
	members := map[id.UserID]string{
		"@a:here": "join", "@b:there": "join", "@b2:there": "join",
		"@c:invited.example": "invite", "@d:left.example": "leave", "@e:banned.example": "ban",
	}
	sk := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		ev   rooms.Event
		want []string
	}{
		{"message", rooms.Event{Type: "m.room.message"}, []string{"here", "there"}},
		{"invite of a remote user", rooms.Event{Type: "m.room.member", StateKey: sk("@c:invited.example")}, []string{"here", "invited.example", "there"}},
		{"ban of a remote user", rooms.Event{Type: "m.room.member", StateKey: sk("@e:banned.example")}, []string{"banned.example", "here", "there"}},
		{"state other than membership", rooms.Event{Type: "m.room.topic", StateKey: sk("@c:invited.example")}, []string{"here", "there"}},
		{"join the resident server answered", rooms.Event{Type: "m.room.member", StateKey: sk("@a:here"), ReceivedFrom: "there"}, []string{"here"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := eventDestinations(&tc.ev, &rooms.RoomInfo{Members: members})
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("destinations %v, want %v", got, tc.want)
			}
		})
	}
}
