package interop_test

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// testQueries: a Dendrite user reads a Matrix OS user's profile
// and resolves a Matrix OS room alias (Dendrite's signed queries, which
// Matrix OS verifies with Dendrite's key), and a Matrix OS user does the
// same the other way (our signed queries).
func testQueries(t *testing.T, p peers) {
	ctx := context.Background()
	ours, theirs := p.n.Register("alice"), p.d.Register("bob")
	for _, tc := range []struct {
		asker, of *mautrix.Client
		name      string
	}{{theirs, ours, "Alice on Matrix OS"}, {ours, theirs, "Bob on Dendrite"}} {
		if err := tc.of.SetDisplayName(ctx, tc.name); err != nil {
			t.Fatalf("%s sets a display name: %v", tc.of.UserID, err)
		}
		p, err := tc.asker.GetProfile(ctx, tc.of.UserID)
		if err != nil || p.DisplayName != tc.name {
			t.Errorf("%s reads the profile of %s: %+v, %v; want display name %q", tc.asker.UserID, tc.of.UserID, p, err, tc.name)
		}

		server := tc.of.UserID.Homeserver()
		localpart := "room-of-" + tc.of.UserID.Localpart()
		alias := id.NewRoomAlias(localpart, server)
		room := testnode.CreateRoom(t, tc.of, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: localpart, RoomVersion: id.RoomV10})
		resolved, err := tc.asker.ResolveAlias(ctx, alias)
		if err != nil || resolved.RoomID != room || !slices.Contains(resolved.Servers, server) {
			t.Errorf("%s resolves %s: %+v, %v; want %s on %s", tc.asker.UserID, alias, resolved, err, room, server)
		}
	}
}
