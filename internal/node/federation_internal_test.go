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
// destinations by themselves; a join made through another server's
// send_join goes to no server: the server that answered has it and sends
// it to the room's other servers (Complement's TestOutboundFederationSend;
// msc3902's residents named in servers_in_room refuse it from the joiner).
func TestEventDestinations(t *testing.T) {
	members := map[id.UserID]string{
		"@a:here": "join", "@b:there": "join", "@b2:there": "join", "@f:third.example": "join",
		"@c:invited.example": "invite", "@d:left.example": "leave", "@e:banned.example": "ban",
	}
	sk := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		ev   rooms.Event
		want []string
	}{
		{"message", rooms.Event{Type: "m.room.message"}, []string{"here", "there", "third.example"}},
		{"invite of a remote user", rooms.Event{Type: "m.room.member", StateKey: sk("@c:invited.example")}, []string{"here", "invited.example", "there", "third.example"}},
		{"ban of a remote user", rooms.Event{Type: "m.room.member", StateKey: sk("@e:banned.example")}, []string{"banned.example", "here", "there", "third.example"}},
		{"state other than membership", rooms.Event{Type: "m.room.topic", StateKey: sk("@c:invited.example")}, []string{"here", "there", "third.example"}},
		{"join the resident server answered", rooms.Event{Type: "m.room.member", StateKey: sk("@a:here"), ReceivedFrom: "there"}, nil},
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
