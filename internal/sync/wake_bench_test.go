package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/testnode"
)

// BenchmarkLongPollWake holds conns long-polling /sync requests (spread
// over users users, those of one user starting from the same token) in one
// room, in-process through the node's HTTP handler (no network), and times
// one send waking them all. Each operation is one such round; wake-all-ms
// is the time from the send until the last long-poll has answered, and
// cpu-ns/wake and allocs/wake the process's CPU time and allocations from
// the send to the last answer, per woken long-poll (the send's own share
// included). users=conns gives every connection a user of its own; fewer
// users than connections is what the load tool's longpoll scenario holds.
//
//	go test -run '^$' -bench LongPollWake -benchtime 3x ./internal/sync/
func BenchmarkLongPollWake(b *testing.B) {
	for _, c := range []struct{ users, conns int }{{200, 200}, {10, 1000}} {
		b.Run(fmt.Sprintf("users=%d/conns=%d", c.users, c.conns), func(b *testing.B) {
			benchmarkLongPollWake(b, c.users, c.conns)
		})
	}
}

func benchmarkLongPollWake(b *testing.B, nUsers, conns int) {
	ctx := context.Background()
	n := testnode.Start(b, testnode.SQLite)
	owner := n.Register("owner")
	roomID := testnode.PublicRoom(b, owner)
	tokens := make([]string, nUsers)
	for i := range tokens {
		uid, err := n.Accounts.CreateUser(ctx, "waiter"+strconv.Itoa(i), "", false)
		if err != nil {
			b.Fatal(err)
		}
		sess, err := n.Accounts.NewRefreshableSession(ctx, uid, "", nil, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = sess.AccessToken
		if _, err := n.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.member", StateKey: new(string(uid)), Sender: uid, Content: json.RawMessage(`{"membership":"join"}`)}); err != nil {
			b.Fatal(err)
		}
	}
	h := n.Handler()
	// One room: the events of every joined room are the room's.
	sync := func(token, since string, timeout time.Duration) (string, int, error) {
		return syncOnce(h, token, since, `{"room":{"timeline":{"limit":5}},"presence":{"not_types":["*"]}}`, timeout)
	}
	since := make([]string, nUsers)
	for i, tok := range tokens {
		next, _, err := sync(tok, "", 0)
		if err != nil {
			b.Fatal(err)
		}
		since[i] = next
	}

	var woken, cpu time.Duration
	var mallocs uint64
	rounds := 0
	for b.Loop() {
		var wg gosync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			u := i % nUsers
			tok, from := tokens[u], since[u]
			wg.Go(func() {
				_, got, err := sync(tok, from, time.Minute)
				if err == nil && got == 0 {
					err = fmt.Errorf("a woken long-poll has no event")
				}
				if err != nil {
					errs <- err
				}
			})
		}
		testnode.WaitFor(b, time.Minute, "every long-poll waiting", func() bool { return n.Sync.Waiting() == conns })
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mallocs0, cpu0, start := ms.Mallocs, cpuTime(b), time.Now()
		if _, err := n.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: owner.UserID, Content: json.RawMessage(`{"msgtype":"m.text","body":"wake"}`)}); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		woken += time.Since(start)
		cpu += cpuTime(b) - cpu0
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - mallocs0
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for i, tok := range tokens {
			next, _, err := sync(tok, since[i], 0)
			if err != nil {
				b.Fatal(err)
			}
			since[i] = next
		}
		rounds++
	}
	wakes := float64(rounds * conns)
	b.ReportMetric(float64(woken.Microseconds())/1000/float64(rounds), "wake-all-ms")
	b.ReportMetric(float64(cpu.Nanoseconds())/wakes, "cpu-ns/wake")
	b.ReportMetric(float64(mallocs)/wakes, "allocs/wake")
}

// BenchmarkWakeUp is the load tool's wakeup scenario without the network:
// one user's long-poll /sync (timeline limit 1, as the tool asks) waits in
// one room until another member's send wakes it. Each operation is one
// send and the woken /sync's answer, through the node's HTTP handler;
// ns/op and allocs/op are theirs together (the send through the engine,
// not HTTP). wake-us is the time from the event's commit (when the
// database writer publishes it to memory) to the woken handler's return, cpu-ns/op the process's
// CPU time over the operation.
//
//	go test -run '^$' -bench WakeUp -benchmem ./internal/sync/
func BenchmarkWakeUp(b *testing.B) {
	ctx := context.Background()
	n := testnode.Start(b, testnode.SQLite)
	owner, waiter := n.Register("owner"), n.Register("waiter")
	roomID := testnode.PublicRoom(b, owner, waiter)
	var committed atomic.Int64 // UnixNano of the last message's commit
	n.Rooms.OnPersist = append(n.Rooms.OnPersist, func(_ context.Context, tx *storage.Tx, ev *rooms.Event, _ *rooms.RoomInfo) error {
		if ev.Type == "m.room.message" {
			tx.AfterCommit(func() { committed.Store(time.Now().UnixNano()) })
		}
		return nil
	})
	h := n.Handler()
	filter := `{"room":{"timeline":{"limit":1}}}`
	since, _, err := syncOnce(h, waiter.AccessToken, "", filter, 0)
	if err != nil {
		b.Fatal(err)
	}
	content := json.RawMessage(`{"msgtype":"m.text","body":"wake"}`)
	var wake, cpu time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		type answer struct {
			next   string
			events int
			at     time.Time
			err    error
		}
		done := make(chan answer, 1)
		go func() {
			next, events, err := syncOnce(h, waiter.AccessToken, since, filter, time.Minute)
			done <- answer{next, events, time.Now(), err}
		}()
		testnode.WaitFor(b, time.Minute, "the long-poll waiting", func() bool { return n.Sync.Waiting() == 1 })
		cpu0 := cpuTime(b)
		b.StartTimer()
		if _, err := n.Rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: owner.UserID, Content: content}); err != nil {
			b.Fatal(err)
		}
		a := <-done
		b.StopTimer()
		cpu += cpuTime(b) - cpu0
		if a.err != nil {
			b.Fatal(a.err)
		}
		if a.events != 1 {
			b.Fatalf("woken /sync has %d events in the room, want 1", a.events)
		}
		wake += a.at.Sub(time.Unix(0, committed.Load()))
		since = a.next
		b.StartTimer()
	}
	b.ReportMetric(float64(wake.Microseconds())/float64(b.N), "wake-us")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// syncOnce runs one /sync for token through h and returns its next_batch
// and the number of timeline events in its joined rooms. It leaves the
// user's presence offline: a waiter coming online would wake others.
func syncOnce(h http.Handler, token, since, filter string, timeout time.Duration) (string, int, error) {
	q := url.Values{"timeout": {strconv.FormatInt(timeout.Milliseconds(), 10)}, "filter": {filter}, "set_presence": {"offline"}}
	if since != "" {
		q.Set("since", since)
	}
	req := httptest.NewRequest("GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return "", 0, fmt.Errorf("sync: HTTP %d: %s", rec.Code, rec.Body.String())
	}
	var out struct {
		NextBatch string `json:"next_batch"`
		Rooms     struct {
			Join map[id.RoomID]struct {
				Timeline struct {
					Events []json.RawMessage `json:"events"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		return "", 0, fmt.Errorf("decode sync: %w", err)
	}
	events := 0
	for _, r := range out.Rooms.Join {
		events += len(r.Timeline.Events)
	}
	return out.NextBatch, events, nil
}
