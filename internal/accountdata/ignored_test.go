package accountdata

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// TestIgnoredUsersFollowWrites checks that the ignored users /sync reads,
// which are cached, follow every change of the list: set, changed,
// deleted, and the deactivation that deletes all account data.
func TestIgnoredUsersFollowWrites(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	s := New(db, slog.New(slog.DiscardHandler), nil, sync.NewNotifier())
	alice := id.UserID("@alice:hs")
	check := func(when string, want ...id.UserID) {
		t.Helper()
		for range 2 { // read, then from the cache
			got, err := s.IgnoredUsers(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			wantSet := map[id.UserID]bool{}
			for _, u := range want {
				wantSet[u] = true
			}
			if len(got) != len(wantSet) || !maps.Equal(got, wantSet) {
				t.Fatalf("%s: ignored = %v, want %v", when, got, want)
			}
		}
	}
	set := func(content string) {
		t.Helper()
		if err := s.Set(ctx, alice, "", "m.ignored_user_list", json.RawMessage(content)); err != nil {
			t.Fatal(err)
		}
	}
	check("before any")
	set(`{"ignored_users":{"@bob:hs":{}}}`)
	check("after the first list", "@bob:hs")
	set(`{"ignored_users":{"@bob:hs":{},"@carol:hs":{}}}`)
	check("after a change", "@bob:hs", "@carol:hs")
	if err := s.Delete(ctx, alice, "", "m.ignored_user_list"); err != nil {
		t.Fatal(err)
	}
	check("after a delete")
	set(`{"ignored_users":{"@dave:hs":{}}}`)
	check("after setting again", "@dave:hs")
	s.lastMu.Lock()
	before := s.last[alice]
	s.lastMu.Unlock()
	s.OnDeactivated(ctx, alice)
	// An IgnoredUsers that read the list before the deletion committed
	// caches it under the position it read then.
	s.lastMu.Lock()
	s.ignored[alice] = ignoredList{pos: before, users: map[id.UserID]bool{"@dave:hs": true}}
	s.lastMu.Unlock()
	check("after deactivation, the list read before it cached")
}
