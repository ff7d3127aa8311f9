package moderation_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestHammerPolicyListsUnderLoad: many users send concurrently to
// several protected rooms (some messages caught by the word filter)
// while user rules of the list they follow are added and lifted, with
// the follower running and catch-ups forced beside it. No send answers
// anything but success or 403 M_FORBIDDEN (a banned sender), and once
// everything has settled every user a rule bans is banned from every
// protected room and nobody else is.
func TestHammerPolicyListsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("hammer test")
	}
	const (
		rooms    = 3
		users    = 10
		messages = 20 // per user
		ruleOps  = 40
	)
	n := testnode.Start(t, testnode.SQLite)
	admin := n.RegisterAdmin("admin")
	list := publicRoom(t, admin, "list")
	var protected []id.RoomID
	for i := range rooms {
		room := publicRoom(t, admin, fmt.Sprint("room ", i))
		protect(t, n, admin, room, map[string]any{"policy_lists": []id.RoomID{list}, "unban_on_rule_removal": true,
			"words": []string{"forbiddenword"}})
		protected = append(protected, room)
	}
	clients := make([]*mautrix.Client, users)
	for i := range clients {
		clients[i] = n.Register(fmt.Sprint("user", i))
		for _, room := range protected {
			testnode.Join(t, clients[i], room)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, users*messages+ruleOps+100)
	for i, c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for j := range messages {
				room := protected[rng.IntN(rooms)]
				text := fmt.Sprintf("message %d from %s", j, c.UserID)
				if rng.IntN(10) == 0 {
					text += " forbiddenword"
				}
				if _, err := c.SendText(t.Context(), room, text); err != nil {
					if code, status := testnode.ErrCode(err); code != "M_FORBIDDEN" || status != 403 {
						errs <- fmt.Errorf("%s's send to %s: %w", c.UserID, room, err)
					}
				}
			}
		})
	}
	// The rules: one writer, so the last write to each user's rule is
	// what must hold at the end.
	banned := make([]bool, users)
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(99, 1))
		for range ruleOps {
			u := rng.IntN(users)
			content := map[string]string{}
			if rng.IntN(3) > 0 {
				content = map[string]string{"entity": string(clients[u].UserID), "recommendation": "m.ban", "reason": "hammer"}
			}
			if _, err := admin.SendStateEvent(t.Context(), list, userRule, fmt.Sprint("user", u), content); err != nil {
				errs <- fmt.Errorf("rule for user%d: %w", u, err)
				return
			}
			banned[u] = len(content) > 0
		}
	})
	// Catch-ups forced while the follower runs.
	stop := make(chan struct{})
	var catchUps sync.WaitGroup
	catchUps.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := n.Moderation.Step(t.Context()); err != nil {
				errs <- fmt.Errorf("step: %w", err)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	catchUps.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	catchUp(t, n)
	var nBanned int
	for u, c := range clients {
		want := "join"
		if banned[u] {
			want = "ban"
			nBanned++
		}
		for _, room := range protected {
			got := n.Rooms.Membership(c.UserID, room)
			if (got == "ban") != banned[u] {
				t.Errorf("%s is %q in %s; a rule bans them: %v (want %s, or leave once unbanned)", c.UserID, got, room, banned[u], want)
			}
		}
	}
	if nBanned == 0 || nBanned == users {
		t.Fatalf("%d of %d users banned at the end: the test checks nothing one way", nBanned, users)
	}
	t.Logf("%d of %d users banned at the end", nBanned, users)
}
