package userdir_test

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

const searchPath = testnode.V3 + "/user_directory/search"

// search runs a directory search as c and returns the user IDs found, in
// order, and whether the list was cut by the limit (limit 0: none sent).
func search(t *testing.T, c *mautrix.Client, term string, limit int) ([]id.UserID, bool) {
	t.Helper()
	body := map[string]any{"search_term": term}
	if limit != 0 {
		body["limit"] = limit
	}
	res := testnode.Call(t, c, "POST", searchPath, body).OK(t)
	var users []id.UserID
	for _, r := range res["results"].([]any) {
		users = append(users, id.UserID(r.(map[string]any)["user_id"].(string)))
	}
	return users, res["limited"].(bool)
}

// user registers a user with a display name.
func user(t *testing.T, n *testnode.Node, prefix, name string) *mautrix.Client {
	t.Helper()
	c := n.Register(prefix)
	if err := c.SetDisplayName(context.Background(), name); err != nil {
		t.Fatalf("set %s's display name: %v", c.UserID, err)
	}
	return c
}

// TestSearch checks whom alice finds: users sharing a room with her and
// users joined to a public or world-readable room, by user ID or display
// name, in any case, with special characters taken literally; users who
// share no such room, who only were invited, who left or who were
// deactivated stay hidden. Each hidden user is found by someone who may
// see them, so their absence is the directory's rule and not a failed
// setup.
func TestSearch(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice := user(t, n, "alice", "Alice")
		bob := user(t, n, "bob", "Bobby Tables")
		carol := user(t, n, "carol", "Carol")
		erin := user(t, n, "erin", "Erin")
		dave := user(t, n, "dave", "Dave")
		zoe := user(t, n, "zoe", "Zoë 100% _under_ (x)")
		gina := user(t, n, "gina", "Gina")
		harry := user(t, n, "harry", "Harry")
		frank := user(t, n, "frank", "Frank")

		shared := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		for _, c := range []*mautrix.Client{bob, zoe, harry} {
			testnode.Invite(t, alice, shared, c.UserID)
			testnode.Join(t, c, shared)
		}
		testnode.Invite(t, alice, shared, gina.UserID) // gina never joins
		testnode.PublicRoom(t, carol, frank)
		testnode.CreateRoom(t, erin, &mautrix.ReqCreateRoom{Preset: "private_chat", InitialState: []*event.Event{{
			Type: event.StateHistoryVisibility, StateKey: new(string),
			Content: event.Content{Raw: map[string]any{"history_visibility": "world_readable"}},
		}}})
		testnode.CreateRoom(t, dave, &mautrix.ReqCreateRoom{Preset: "private_chat"})

		// The positive controls: each user alice must not find is found,
		// under the same term, by one who may see them (gina's comes once
		// she has joined).
		for _, c := range []struct {
			searcher *mautrix.Client
			term     string
			want     id.UserID
		}{
			{dave, "dave", dave.UserID},    // in his own room
			{alice, "harry", harry.UserID}, // before he leaves
			{alice, "frank", frank.UserID}, // before he is deactivated
		} {
			if got, _ := search(t, c.searcher, c.term, 0); !slices.Equal(got, []id.UserID{c.want}) {
				t.Fatalf("%s searching %q: got %v, want %s", c.searcher.UserID, c.term, got, c.want)
			}
		}
		testnode.Leave(t, harry, shared)
		if err := n.Accounts.Deactivate(context.Background(), frank.UserID, false); err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			name string
			term string
			want []*mautrix.Client
		}{
			{"display name", "Tables", []*mautrix.Client{bob}},
			{"display name, other case", "bOBBY tAB", []*mautrix.Client{bob}},
			{"localpart", bob.UserID.Localpart(), []*mautrix.Client{bob}},
			{"whole user ID", string(bob.UserID), []*mautrix.Client{bob}},
			{"public room member", "carol", []*mautrix.Client{carol}},
			{"world-readable room member", "erin", []*mautrix.Client{erin}},
			{"no shared or public room", "dave", nil},
			{"only invited", "gina", nil},
			{"left the shared room", "harry", nil},
			{"deactivated", "frank", nil},
			{"unicode, other case", "ZOË", []*mautrix.Client{zoe}},
			{"percent", "100%", []*mautrix.Client{zoe}},
			{"underscores", "_under_", []*mautrix.Client{zoe}},
			{"parenthesis", "(x)", []*mautrix.Client{zoe}},
			{"SQL wildcard is literal", "b_b", nil},
			{"LIKE wildcard is literal", "%", []*mautrix.Client{zoe}},
			{"quote", "'", nil},
			{"surrounding spaces", "  tables  ", []*mautrix.Client{bob}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, limited := search(t, alice, tc.term, 0)
				var want []id.UserID
				for _, c := range tc.want {
					want = append(want, c.UserID)
				}
				if !slices.Equal(got, want) || limited {
					t.Errorf("%q: got %v (limited %v), want %v", tc.term, got, limited, want)
				}
			})
		}

		// Gina joins: now she shares the room and is found.
		testnode.Join(t, gina, shared)
		if got, _ := search(t, alice, "gina", 0); !slices.Equal(got, []id.UserID{gina.UserID}) {
			t.Errorf("gina after joining: got %v", got)
		}
	})
}

// TestSearchLimit checks the limit and the limited flag: exact and prefix
// matches come first, then the rest by user ID.
func TestSearchLimit(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := user(t, n, "alice", "Alice")
	inside := user(t, n, "m", "Big Crowd")
	first := user(t, n, "n", "Crowd A")
	second := user(t, n, "o", "crowd b")
	testnode.PublicRoom(t, alice, inside, first, second)
	all := []id.UserID{first.UserID, second.UserID, inside.UserID}
	for _, tc := range []struct {
		limit   int
		want    []id.UserID
		limited bool
	}{
		{0, all, false}, // the default limit, 10
		{2, all[:2], true},
		{3, all, false},
		{1000, all, false}, // more than the server's bound
	} {
		got, limited := search(t, alice, "crowd", tc.limit)
		if !slices.Equal(got, tc.want) || limited != tc.limited {
			t.Errorf("limit %d: got %v (limited %v), want %v (limited %v)", tc.limit, got, limited, tc.want, tc.limited)
		}
	}
}

// TestSearchBadRequests checks the refusals.
func TestSearchBadRequests(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	testnode.Call(t, alice, "POST", searchPath, map[string]any{"search_term": "alice"}).OK(t)
	testnode.Call(t, alice, "POST", searchPath, map[string]any{}).Want(t, 400, "M_MISSING_PARAM")
	testnode.Call(t, alice, "POST", searchPath, "not json").Want(t, 400, "M_NOT_JSON")
	testnode.Call(t, alice, "POST", searchPath, map[string]any{"search_term": 5}).Want(t, 400, "M_BAD_JSON")
	n.Do(t, "POST", searchPath, "", map[string]any{"search_term": "alice"}).Want(t, 401, "M_MISSING_TOKEN")
}
