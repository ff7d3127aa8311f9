package interop_test

import (
	"testing"

	"github.com/matrixos/matrixos/internal/testnode"
)

// peers are the two servers the interop tests federate: Dendrite and a
// Matrix OS node (SQLite) whose certificates come from the same test CA.
// Each check registers its own users and makes its own rooms, so checks
// share one pair and Dendrite starts once per top-level test.
type peers struct {
	d *testnode.Dendrite
	n *testnode.Node
}

func startPeers(t *testing.T) peers {
	t.Helper()
	ca := testnode.NewCA(t)
	return peers{d: testnode.StartDendrite(t, ca), n: testnode.StartFederating(t, testnode.SQLite, ca)}
}

// TestDendrite runs the federation checks against one Dendrite and one
// Matrix OS node.
func TestDendrite(t *testing.T) {
	p := startPeers(t)
	t.Run("Keys", func(t *testing.T) { testKeys(t, p) })
	t.Run("Queries", func(t *testing.T) { testQueries(t, p) })
	t.Run("Media", func(t *testing.T) { testMedia(t, p) })
	t.Run("Rooms", func(t *testing.T) { testRooms(t, p) })
}
