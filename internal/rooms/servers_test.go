package rooms

import (
	"slices"
	"testing"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func memberEvent(evID id.EventID, user id.UserID, membership string) *Event {
	sk := string(user)
	return &Event{ID: evID, Type: "m.room.member", StateKey: &sk, Sender: user,
		PDU: &pdu.PDU{Content: []byte(`{"membership":"` + membership + `"}`)}}
}

// TestJoinedServers: the servers of a room's state are those of its joined
// members, sorted, each once, and follow membership changes.
func TestJoinedServers(t *testing.T) {
	st := stateOf([]*Event{
		memberEvent("$1", "@a:b.example", "join"),
		memberEvent("$2", "@c:a.example", "join"),
		memberEvent("$3", "@d:a.example", "join"),
		memberEvent("$4", "@e:c.example", "invite"),
	}, nil, 4)
	if want := []string{"a.example", "b.example"}; !slices.Equal(st.servers, want) {
		t.Fatalf("servers = %v, want %v", st.servers, want)
	}
	st = st.with(id.RoomV11, memberEvent("$5", "@e:c.example", "join"))
	if want := []string{"a.example", "b.example", "c.example"}; !slices.Equal(st.servers, want) {
		t.Fatalf("after c's join, servers = %v, want %v", st.servers, want)
	}
	st = st.with(id.RoomV11, memberEvent("$6", "@a:b.example", "leave"))
	if want := []string{"a.example", "c.example"}; !slices.Equal(st.servers, want) {
		t.Fatalf("after b's leave, servers = %v, want %v", st.servers, want)
	}
	info := &RoomInfo{Members: st.members}
	if got := info.JoinedServers(); !slices.Equal(got, st.servers) {
		t.Fatalf("RoomInfo without state: %v, want %v", got, st.servers)
	}
}
