package federation_test

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// directoryEntry is one result of /user_directory/search (decoded here:
// mautrix reads display_name as displayname).
type directoryEntry struct {
	UserID      id.UserID `json:"user_id"`
	DisplayName string    `json:"display_name"`
}

// searchDirectory is c's /user_directory/search for term.
func searchDirectory(t *testing.T, c *mautrix.Client, term string) []directoryEntry {
	t.Helper()
	resp := testnode.Call(t, c, "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": term})
	if resp.Status != 200 {
		t.Fatalf("%s searches the user directory for %q: %d %s", c.UserID, term, resp.Status, resp.Body)
	}
	return testnode.Decode[struct{ Results []directoryEntry }](t, resp.Body).Results
}

// TestRemoteUserInUserDirectory: after bob of B joins alice's room on A,
// alice's user directory search finds him, with the display name that B
// put in his member event from his profile.
func TestRemoteUserInUserDirectory(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), b.Register("bob")
	if err := bob.SetDisplayName(ctx, "Bob Remote"); err != nil {
		t.Fatal(err)
	}
	roomID, alias := publicRoomWithAlias(t, a, alice, "dir")
	if found := searchDirectory(t, alice, bob.UserID.Localpart()); len(found) != 0 {
		t.Fatalf("alice finds %+v before bob joins", found)
	}
	aliceSync := newSyncer(t, alice)
	if _, err := bob.JoinRoom(ctx, string(alias), nil); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	aliceSync.waitMembership(t, roomID, bob.UserID, "join")
	want := []directoryEntry{{bob.UserID, "Bob Remote"}}
	for _, term := range []string{"remote", bob.UserID.Localpart()} {
		if found := searchDirectory(t, alice, term); !slices.Equal(found, want) {
			t.Fatalf("alice searches for %q: %+v, want %+v", term, found, want)
		}
	}
}
