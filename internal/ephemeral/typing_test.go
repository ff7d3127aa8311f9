package ephemeral_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestTyping(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		alice, bob, carol, roomID := setup(t, n)
		since := testnode.SyncOnce(t, bob, "", 0).NextBatch

		// Bob's long-poll sees Alice start typing...
		ch := pollUntil(bob, since, func(s *mautrix.RespSync) bool {
			users, _ := typingUsers(s, roomID)
			return slices.Contains(users, string(alice.UserID))
		})
		time.Sleep(50 * time.Millisecond)
		if _, err := alice.UserTyping(ctx, roomID, true, 20*time.Second); err != nil {
			t.Fatalf("typing: %v", err)
		}
		s := await(t, "typing start", ch)

		// ...and stop.
		ch = pollUntil(bob, s.NextBatch, func(s *mautrix.RespSync) bool {
			users, ok := typingUsers(s, roomID)
			return ok && len(users) == 0
		})
		time.Sleep(50 * time.Millisecond)
		if _, err := alice.UserTyping(ctx, roomID, false, 0); err != nil {
			t.Fatalf("stop typing: %v", err)
		}
		s = await(t, "typing stop", ch)

		// A timeout ends typing by itself.
		ch = pollUntil(bob, s.NextBatch, func(s *mautrix.RespSync) bool {
			users, ok := typingUsers(s, roomID)
			return ok && len(users) == 0
		})
		if _, err := alice.UserTyping(ctx, roomID, true, 300*time.Millisecond); err != nil {
			t.Fatalf("typing: %v", err)
		}
		await(t, "typing timeout", ch)

		// An initial sync shows who types now; an unchanged list is not repeated.
		if _, err := alice.UserTyping(ctx, roomID, true, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		s = testnode.SyncOnce(t, bob, "", 0)
		if users, _ := typingUsers(s, roomID); !slices.Equal(users, []string{string(alice.UserID)}) {
			t.Fatalf("initial sync typing: %v", users)
		}
		if _, ok := typingUsers(testnode.SyncOnce(t, bob, s.NextBatch, 0), roomID); ok {
			t.Fatalf("unchanged typing list repeated")
		}
		validateSyncEvents(t, bob)
		// Leaving the room stops typing.
		if _, err := alice.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if users, ok := typingUsers(testnode.SyncOnce(t, bob, s.NextBatch, 0), roomID); !ok || len(users) != 0 {
			t.Fatalf("typing after leaving: %v (reported: %v)", users, ok)
		}

		path := func(u string) string {
			return fmt.Sprintf("/rooms/%s/typing/%s", url.PathEscape(string(roomID)), url.PathEscape(u))
		}
		for _, tc := range []struct {
			name string
			c    *mautrix.Client
			path string
			body string
			code string
		}{
			{"for another user", bob, path(string(alice.UserID)), `{"typing":true,"timeout":1000}`, "M_FORBIDDEN"},
			{"not joined", carol, path(string(carol.UserID)), `{"typing":true,"timeout":1000}`, "M_FORBIDDEN"},
			{"left", alice, path(string(alice.UserID)), `{"typing":true,"timeout":1000}`, "M_FORBIDDEN"},
			{"missing typing", bob, path(string(bob.UserID)), `{"timeout":1000}`, "M_BAD_JSON"},
			{"typing not a bool", bob, path(string(bob.UserID)), `{"typing":"yes"}`, "M_BAD_JSON"},
			{"not an object", bob, path(string(bob.UserID)), `[true]`, "M_BAD_JSON"},
			{"not JSON", bob, path(string(bob.UserID)), `{typing`, "M_NOT_JSON"},
			{"negative timeout", bob, path(string(bob.UserID)), `{"typing":true,"timeout":-5}`, "M_INVALID_PARAM"},
		} {
			res := testnode.Call(t, tc.c, "PUT", testnode.V3+tc.path, tc.body)
			if res.ErrCode() != tc.code || res.Status < 400 {
				t.Errorf("%s: got %d %s, want %s", tc.name, res.Status, res.Body, tc.code)
			}
		}
	})
}
