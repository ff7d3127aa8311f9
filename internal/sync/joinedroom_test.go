package sync_test

import (
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestJoinedRoomCarriesEphemeral: a joined room's section carries an
// ephemeral list even when nobody types or sent a receipt, as clients and
// Complement (TestACLsForEDUs) read rooms.join.<room>.ephemeral.events
// without checking that the key is there.
func TestJoinedRoomCarriesEphemeral(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := n.Register("alice")
		room := testnode.PublicRoom(t, alice)
		s := testnode.Call(t, alice, "GET", "/_matrix/client/v3/sync", nil).OK(t)
		rooms, _ := s["rooms"].(map[string]any)
		join, _ := rooms["join"].(map[string]any)
		jr, ok := join[string(room)].(map[string]any)
		if !ok {
			t.Fatalf("room %s missing from rooms.join: %v", room, s["rooms"])
		}
		eph, ok := jr["ephemeral"].(map[string]any)
		if !ok {
			t.Fatalf("joined room without ephemeral: %v", jr)
		}
		if evs, ok := eph["events"].([]any); !ok || len(evs) != 0 {
			t.Errorf("ephemeral = %v, want an empty events list", eph)
		}
	})
}
