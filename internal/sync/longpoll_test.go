package sync_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/testnode"
)

// TestManyLongPollsLoseNothing holds many long-polling /sync loops at once
// (several per user and device, starting from the same token, so woken
// requests share builds) while senders send at random moments, and checks
// that every loop receives every event exactly once.
func TestManyLongPollsLoseNothing(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		const (
			users        = 4
			loopsPerUser = 6
			senders      = 3
			perSender    = 15
		)
		owner := n.Register("owner")
		var members []*mautrix.Client
		for range users {
			members = append(members, n.Register("poller"))
		}
		room := testnode.PublicRoom(t, owner, members...)
		since := make([]string, users)
		for i, c := range members {
			since[i] = testnode.SyncOnce(t, c, "", 0).NextBatch
		}

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sent := make(chan id.EventID, senders*perSender)
		seen := make([][]id.EventID, users*loopsPerUser)
		errs := make(chan error, users*loopsPerUser+senders)
		var polls gosync.WaitGroup
		for l := range users * loopsPerUser {
			c, tok := members[l%users], since[l%users]
			polls.Go(func() {
				for len(seen[l]) < senders*perSender {
					resp, err := c.SyncRequest(ctx, 10_000, tok, `{"room":{"timeline":{"limit":100}}}`, false, "")
					if err != nil {
						errs <- fmt.Errorf("loop %d: sync: %w", l, err)
						return
					}
					if jr := resp.Rooms.Join[room]; jr != nil {
						if jr.Timeline.Limited {
							errs <- fmt.Errorf("loop %d: limited timeline", l)
							return
						}
						for _, ev := range jr.Timeline.Events {
							if ev.Type.Type == "m.room.message" {
								seen[l] = append(seen[l], ev.ID)
							}
						}
					}
					tok = resp.NextBatch
				}
			})
		}
		var sends gosync.WaitGroup
		for s := range senders {
			c := members[s]
			sends.Go(func() {
				for i := range perSender {
					time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
					resp, err := c.SendText(ctx, room, fmt.Sprintf("sender %d message %d", s, i))
					if err != nil {
						errs <- fmt.Errorf("sender %d: %w", s, err)
						return
					}
					sent <- resp.EventID
				}
			})
		}
		sends.Wait()
		polls.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		close(sent)
		var want []id.EventID
		for ev := range sent {
			want = append(want, ev)
		}
		slices.Sort(want)
		for l, got := range seen {
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("loop %d received %d events, want the %d sent, each once", l, len(got), len(want))
			}
		}
	})
}
