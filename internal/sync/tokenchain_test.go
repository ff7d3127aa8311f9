package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestSyncInCommitWindow holds a send between its commit and the end of
// its transaction's AfterCommit functions (where the engine publishes the
// room's latest position) and syncs in that window. The response must not
// carry a next_batch past the event unless it holds the event: before the
// fix, the position was visible while the room's LastPos still lagged, so
// /sync skipped the room and its token passed the event for good.
func TestSyncInCommitWindow(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := t.Context()
		// Registered before any room event is stored: the writer reads
		// OnPersist only when it stores one.
		var hold atomic.Pointer[chan struct{}]
		held := make(chan struct{}, 1)
		n.Rooms.OnPersist = append(n.Rooms.OnPersist, func(_ context.Context, tx *storage.Tx, ev *rooms.Event, _ *rooms.RoomInfo) error {
			if release := hold.Swap(nil); release != nil && ev.Type == event.EventMessage.Type {
				tx.AfterCommit(func() {
					held <- struct{}{}
					<-*release
				})
			}
			return nil
		})
		alice, bob := n.Register("alice"), n.Register("bob")
		room := testnode.PublicRoom(t, alice, bob)
		since := testnode.SyncOnce(t, bob, "", 0).NextBatch

		release := make(chan struct{})
		releaseOnce := gosync.OnceFunc(func() { close(release) })
		t.Cleanup(releaseOnce) // runs before the node stops
		hold.Store(&release)
		sent := make(chan error, 1)
		var windowID id.EventID
		go func() {
			resp, err := alice.SendText(ctx, room, "sent in the window")
			if err == nil {
				windowID = resp.EventID
			}
			sent <- err
		}()
		<-held
		// The event has committed; its transaction's AfterCommit
		// functions are running. A sync now sees it or stays before it.
		got := map[id.EventID]bool{}
		mid := testnode.SyncOnce(t, bob, since, 0)
		collect(got, mid, room)
		releaseOnce()
		if err := <-sent; err != nil {
			t.Fatalf("send: %v", err)
		}
		after, err := alice.SendText(ctx, room, "sent after")
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		// Follow the chain from the token given in the window until the
		// later event arrives.
		since = mid.NextBatch
		for !got[after.EventID] {
			resp := testnode.SyncOnce(t, bob, since, 5000)
			collect(got, resp, room)
			since = resp.NextBatch
		}
		if !got[windowID] {
			t.Fatalf("the token chain passed %s (next_batch %s given in the commit window) without delivering it", windowID, mid.NextBatch)
		}
	})
}

// collect adds the timeline events of room in resp to got.
func collect(got map[id.EventID]bool, resp *mautrix.RespSync, room id.RoomID) {
	if jr, ok := resp.Rooms.Join[room]; ok {
		for _, ev := range jr.Timeline.Events {
			got[ev.ID] = true
		}
	}
}

// TestSyncTokenChainMissesNothing checks the invariant of incremental
// /sync under concurrent writes: every event at a position at or below a
// response's next_batch is in that response or in an earlier one of the
// same token chain (or the timeline says limited, which this test's
// timeline limit never needs). Several senders send in several rooms, each
// message after a typing notification (which wakes long-polls and moves
// the token's ephemeral part), while clients follow next_batch with
// zero-timeout and long-poll syncs. Each client must end with exactly the
// acknowledged sends, each once.
func TestSyncTokenChainMissesNothing(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		const (
			nRooms    = 3
			nSenders  = 4
			perSender = 250
			endBody   = "end of test"
		)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()

		owner := n.Register("owner")
		senders := registerAll(n, "sender", nSenders)
		sent := newCounter()
		watchers := []*chainWatcher{
			{timeoutMS: 0, sent: sent}, {timeoutMS: 0, sent: sent}, {timeoutMS: 1000}, {timeoutMS: 1000},
		}
		members := senders
		for _, w := range watchers {
			w.client = n.Register("watcher")
			members = append(members, w.client)
		}
		rooms := make([]id.RoomID, nRooms)
		for i := range rooms {
			rooms[i] = testnode.PublicRoom(t, owner, members...)
		}
		for _, w := range watchers {
			w.since = testnode.SyncOnce(t, w.client, "", 0).NextBatch
		}

		var watching gosync.WaitGroup
		for _, w := range watchers {
			watching.Go(func() { w.follow(ctx, nRooms, endBody) })
		}

		var mu gosync.Mutex
		acked := map[id.EventID]bool{}
		var sending gosync.WaitGroup
		for s, c := range senders {
			sending.Go(func() {
				for i := range perSender {
					room := rooms[(s+i)%nRooms]
					if _, err := c.UserTyping(ctx, room, true, 30*time.Second); err != nil {
						t.Errorf("%s typing: %v", c.UserID, err)
						return
					}
					resp, err := c.SendText(ctx, room, fmt.Sprintf("message %d", i))
					if err != nil {
						t.Errorf("%s send: %v", c.UserID, err)
						return
					}
					mu.Lock()
					acked[resp.EventID] = true
					mu.Unlock()
					sent.add()
				}
			})
		}
		sending.Wait()
		sent.close()
		if t.Failed() {
			cancel()
			watching.Wait()
			return
		}
		// The end markers come after every acknowledged send, so a client
		// that has them holds a token past all of them.
		for _, room := range rooms {
			if _, err := owner.SendText(ctx, room, endBody); err != nil {
				t.Errorf("send end marker: %v", err)
				cancel()
			}
		}
		watching.Wait()
		if t.Failed() {
			return
		}
		if len(acked) != nSenders*perSender {
			t.Fatalf("%d sends acknowledged, want %d", len(acked), nSenders*perSender)
		}
		for _, w := range watchers {
			w.check(t, acked)
		}
	})
}

func registerAll(n *testnode.Node, prefix string, count int) []*mautrix.Client {
	out := make([]*mautrix.Client, count)
	for i := range out {
		out[i] = n.Register(prefix)
	}
	return out
}

// chainWatcher follows one /sync token chain and records the messages it
// receives.
type chainWatcher struct {
	client    *mautrix.Client
	timeoutMS int
	since     string
	sent      *counter // acknowledged sends, pacing zero-timeout syncs

	got      map[id.EventID]int // message event -> times received
	syncs    int
	failures []string
}

// chainFilter keeps every new event of a sync in its timeline.
const chainFilter = `{"room":{"timeline":{"limit":1000}}}`

// follow syncs until it has seen the end marker in every room.
func (w *chainWatcher) follow(ctx context.Context, nRooms int, endBody string) {
	w.got = map[id.EventID]int{}
	ended := map[id.RoomID]bool{}
	var seen int
	for len(ended) < nRooms {
		resp, err := w.client.SyncRequest(ctx, w.timeoutMS, w.since, chainFilter, false, "")
		if err != nil {
			w.failures = append(w.failures, fmt.Sprintf("sync %d: %v (end marker seen in %d of %d rooms)", w.syncs, err, len(ended), nRooms))
			return
		}
		w.syncs++
		for roomID, jr := range resp.Rooms.Join {
			if jr.Timeline.Limited {
				w.failures = append(w.failures, fmt.Sprintf("sync %d: timeline of %s limited", w.syncs, roomID))
			}
			for _, ev := range jr.Timeline.Events {
				if ev.Type != event.EventMessage {
					continue
				}
				if messageBody(ev) == endBody {
					ended[roomID] = true
					continue
				}
				w.got[ev.ID]++
			}
		}
		w.since = resp.NextBatch
		if w.timeoutMS == 0 {
			// At most one zero-timeout sync per acknowledged send, so the
			// test's cost does not grow with the machine's slowness.
			seen = w.sent.waitPast(ctx, seen)
		}
	}
}

// check compares what the watcher received with the acknowledged sends.
func (w *chainWatcher) check(t *testing.T, acked map[id.EventID]bool) {
	t.Helper()
	name := fmt.Sprintf("%s (timeout %d ms, %d syncs)", w.client.UserID, w.timeoutMS, w.syncs)
	for _, f := range w.failures {
		t.Errorf("%s: %s", name, f)
	}
	var missing, twice, unknown []id.EventID
	for evID := range acked {
		if w.got[evID] == 0 {
			missing = append(missing, evID)
		}
	}
	for evID, times := range w.got {
		if !acked[evID] {
			unknown = append(unknown, evID)
		}
		if times > 1 {
			twice = append(twice, evID)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d acknowledged events never arrived, e.g. %s", name, len(missing), len(acked), missing[0])
	}
	if len(twice) > 0 {
		t.Errorf("%s: %d events arrived more than once, e.g. %s", name, len(twice), twice[0])
	}
	if len(unknown) > 0 {
		t.Errorf("%s: %d events arrived that no send acknowledged, e.g. %s", name, len(unknown), unknown[0])
	}
}

func messageBody(ev *event.Event) string {
	if body, ok := ev.Content.Raw["body"].(string); ok {
		return body
	}
	var c struct {
		Body string `json:"body"`
	}
	json.Unmarshal(ev.Content.VeryRaw, &c)
	return c.Body
}

// counter counts events and lets goroutines wait for the next one.
type counter struct {
	mu     gosync.Mutex
	n      int
	closed bool
	next   chan struct{} // closed at the next add or close
}

func newCounter() *counter { return &counter{next: make(chan struct{})} }

func (c *counter) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	close(c.next)
	c.next = make(chan struct{})
}

// close ends every wait, now and later.
func (c *counter) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.next)
	}
}

// waitPast waits until the count is above seen (or the counter is closed,
// or ctx ends) and returns the count.
func (c *counter) waitPast(ctx context.Context, seen int) int {
	for {
		c.mu.Lock()
		n, closed, next := c.n, c.closed, c.next
		c.mu.Unlock()
		if n > seen || closed {
			return n
		}
		select {
		case <-next:
		case <-ctx.Done():
			return n
		}
	}
}
