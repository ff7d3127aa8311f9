package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/cputime"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/testnode"
)

// BenchmarkInboundTransactionToSync measures issue 9's first federation
// figure: how long after an inbound transaction of 50 PDUs is sent a local
// user's long-polling /sync delivers the last of them. Node B is the
// origin: bob, its user, has joined alice's room on node A; B's outbox is
// stopped, and each iteration builds 50 messages of bob's on B (not timed)
// and sends them to A's /send as one transaction signed by B, while
// alice's /sync long-polls A. Reported: the latency from the send to the
// /sync answer holding the last PDU (p50, p99), how long after the PUT
// returned that answer came (p99; 0 when it came first), and the process's
// CPU time per transaction (both nodes and the client: they share it).
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench InboundTransactionToSync -benchtime 30x -count 3 ./internal/federation/
func BenchmarkInboundTransactionToSync(b *testing.B) {
	ctx := context.Background()
	ca := testnode.NewCA(b)
	a := testnode.StartFederating(b, testnode.SQLite, ca)
	origin := testnode.StartFederating(b, testnode.SQLite, ca)
	alice, bob := a.Register("alice"), origin.Register("bob")
	roomID := testnode.CreateRoom(b, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		b.Fatalf("bob joins: %v", err)
	}
	origin.Federation.Outbox.Stop()
	seen := followSync(b, alice, roomID)

	var fromSend, afterPut []time.Duration
	var cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		pdus := make([]rooms.Proto, 50)
		for j := range pdus {
			content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("message %d.%d", i, j)})
			pdus[j] = rooms.Proto{Type: "m.room.message", Sender: bob.UserID, Content: content}
		}
		evs, err := origin.Rooms.SendMany(ctx, roomID, pdus)
		if err != nil {
			b.Fatalf("bob's messages on B: %v", err)
		}
		req := txn(origin.Config.ServerName, a.Config.ServerName, fmt.Sprint("bench", i))
		for _, ev := range evs {
			req.PDUs = append(req.PDUs, ev.JSON)
		}
		last := evs[len(evs)-1].ID
		b.StartTimer()

		meter := cputime.Start()
		sent := time.Now()
		resp, err := origin.Federation.Client.SendTransaction(ctx, req)
		put := time.Now()
		if err != nil {
			b.Fatalf("send: %v", err)
		}
		for eventID, result := range resp.PDUs {
			if result.Error != "" {
				b.Fatalf("A refused %s: %s", eventID, result.Error)
			}
		}
		delivered := seen.wait(b, last)
		cpu += meter.Elapsed()
		fromSend = append(fromSend, delivered.Sub(sent))
		afterPut = append(afterPut, max(0, delivered.Sub(put)))
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(fromSend, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(fromSend, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(afterPut, 99)), "p99-after-put-ms")
	b.ReportMetric(ms(cpu)/float64(b.N), "cpu-ms/op")
}

// syncFollower long-polls one user's /sync and records when each timeline
// event of a room arrived.
type syncFollower struct {
	arrived chan arrival
	times   map[id.EventID]time.Time
}

type arrival struct {
	eventID id.EventID
	at      time.Time
	err     error
}

// followSync starts long-polling c's /sync (30 s timeout) until the
// benchmark ends.
func followSync(b *testing.B, c *mautrix.Client, roomID id.RoomID) *syncFollower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &syncFollower{arrived: make(chan arrival, 4096), times: map[id.EventID]time.Time{}}
	first, err := c.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		b.Fatalf("first sync: %v", err)
	}
	done := make(chan struct{})
	b.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		since := first.NextBatch
		for ctx.Err() == nil {
			resp, err := c.FullSyncRequest(ctx, mautrix.ReqSync{Since: since, Timeout: 30_000})
			at := time.Now()
			if err != nil {
				if ctx.Err() == nil {
					f.arrived <- arrival{err: err}
				}
				return
			}
			since = resp.NextBatch
			if room := resp.Rooms.Join[roomID]; room != nil {
				for _, ev := range room.Timeline.Events {
					f.arrived <- arrival{eventID: ev.ID, at: at}
				}
			}
		}
	}()
	return f
}

// wait returns when the /sync answer holding the event arrived; the
// benchmark fails after 30 s.
func (f *syncFollower) wait(b *testing.B, eventID id.EventID) time.Time {
	timeout := time.After(30 * time.Second)
	for {
		if at, ok := f.times[eventID]; ok {
			return at
		}
		select {
		case a := <-f.arrived:
			if a.err != nil {
				b.Fatalf("sync: %v", a.err)
			}
			f.times[a.eventID] = a.at
		case <-timeout:
			b.Fatalf("/sync never delivered %s", eventID)
		}
	}
}

func percentile(values []time.Duration, p int) time.Duration {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(values))
	return sorted[(len(sorted)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Sizes of the room BenchmarkJoinLargeRoom joins, from issue 9.
const (
	largeRoomMembers = 2000
	largeRoomState   = 10_000
)

// BenchmarkJoinLargeRoom measures issue 9's join figure: a user of a fresh
// node B joins a room of node A with 2,000 members and 10,000 state events
// (the members' joins and 8,000 other state events, written straight
// through A's engine). Each iteration starts a new node B (not timed; it
// stays up, as the next joiner checks its signature on its user's join) and
// times its user's /join, which returns once B has checked and stored the
// room's state and auth chain from A's send_join answer. Reported: the
// join's wall time, the growth of the process's peak heap during it over
// the heap before (both nodes share the process; sampled every 5 ms) and
// the CPU time per join.
//
// Go runs the function once with one iteration, then with three, so A's
// room is built twice.
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench JoinLargeRoom -benchtime 3x -timeout 30m ./internal/federation/
func BenchmarkJoinLargeRoom(b *testing.B) {
	ctx := context.Background()
	ca := testnode.NewCA(b)
	a := testnode.StartFederating(b, testnode.SQLite, ca)
	alice := a.Register("alice")
	roomID := testnode.CreateRoom(b, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	// The other state first: each event's unread counts are worked out
	// for every local member (the members are A's users), so the joins go
	// last.
	var state []rooms.Proto
	for i := range largeRoomState - largeRoomMembers {
		key := fmt.Sprint("key", i)
		state = append(state, rooms.Proto{Type: "org.example.state", StateKey: &key, Sender: alice.UserID,
			Content: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
	}
	for i := range largeRoomMembers {
		user := fmt.Sprintf("@member%d:%s", i, a.Config.ServerName)
		state = append(state, rooms.Proto{Type: "m.room.member", StateKey: &user, Sender: id.UserID(user),
			Content: json.RawMessage(fmt.Sprintf(`{"membership":"join","displayname":"Member %d"}`, i))})
	}
	built := time.Now()
	for chunk := range slices.Chunk(state, 50) {
		if _, err := a.Rooms.SendMany(ctx, roomID, chunk); err != nil {
			b.Fatalf("room state on A: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "%d state events written on A in %v\n", len(state), time.Since(built))

	var wall, cpu []time.Duration
	var heapGrowth []uint64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		joiner := testnode.StartFederating(b, testnode.SQLite, ca)
		bob := joiner.Register("bob")
		runtime.GC()
		sampler := startHeapSampler()
		meter := cputime.Start()
		b.StartTimer()
		began := time.Now()
		if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
			b.Fatalf("bob joins the large room: %v", err)
		}
		wall = append(wall, time.Since(began))
		fmt.Fprintf(os.Stderr, "joined in %v\n", wall[len(wall)-1])
		b.StopTimer()
		cpu = append(cpu, meter.Elapsed())
		heapGrowth = append(heapGrowth, sampler.stop())
		members, err := bob.JoinedMembers(ctx, roomID)
		if err != nil {
			b.Fatalf("bob's joined members: %v", err)
		}
		if want := largeRoomMembers + 2 + i; len(members.Joined) != want {
			b.Fatalf("bob sees %d joined members, want %d", len(members.Joined), want)
		}
		// The node stays up: the next joiner checks its signature on
		// bob's join.
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(wall, 50)), "join-ms")
	b.ReportMetric(ms(percentile(cpu, 50)), "cpu-ms/op")
	b.ReportMetric(float64(slices.Max(heapGrowth))/(1<<20), "peak-heap-growth-MiB")
}

// heapSampler follows the process's heap in use, so a benchmark can tell
// the most an operation added to it.
type heapSampler struct {
	base uint64
	peak chan uint64
	done chan struct{}
}

func startHeapSampler() *heapSampler {
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	s := &heapSampler{base: stats.HeapAlloc, peak: make(chan uint64), done: make(chan struct{})}
	go func() {
		peak := stats.HeapAlloc
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				s.peak <- peak
				return
			case <-tick.C:
				runtime.ReadMemStats(&stats)
				peak = max(peak, stats.HeapAlloc)
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak heap over the heap at the
// start.
func (s *heapSampler) stop() uint64 {
	close(s.done)
	return <-s.peak - s.base
}

// partialRoomMembers is the size of the room BenchmarkJoinPartialState
// joins (issue 16).
const partialRoomMembers = 10_000

// BenchmarkJoinPartialState measures issue 16's join figure: a user of a
// fresh node B joins a room of node A with 10,000 members (written
// straight through A's engine) and sends a message, with partial state
// (send_join with omit_members, the members fetched in the background)
// and, beside it, with the full state (FullStateJoins). Reported per mode:
// the wall time from the /join request to the first message's 200
// (first-send-ms), for partial state the time until B's state is complete
// (resync-ms), and the growth of the process's peak heap over the heap
// before the join, until the state is complete (both nodes share the
// process; sampled every 5 ms).
//
//	GOEXPERIMENT=jsonv2 go test -tags goolm -run '^$' -bench JoinPartialState -benchtime 1x -timeout 30m ./internal/federation/
func BenchmarkJoinPartialState(b *testing.B) {
	ctx := context.Background()
	ca := testnode.NewCA(b)
	a := testnode.StartFederating(b, testnode.SQLite, ca)
	alice := a.Register("alice")
	roomID := testnode.CreateRoom(b, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "big"})
	built := time.Now()
	bigRoom(b, a, roomID, partialRoomMembers)
	fmt.Fprintf(os.Stderr, "%d members written on A in %v\n", partialRoomMembers, time.Since(built))
	for _, mode := range []struct {
		name    string
		partial bool
	}{{"partial", true}, {"full", false}} {
		b.Run(mode.name, func(b *testing.B) {
			var first, complete []time.Duration
			var heapGrowth []uint64
			for range b.N {
				b.StopTimer()
				joiner := testnode.StartFederating(b, testnode.SQLite, ca)
				joiner.Federation.FullStateJoins = !mode.partial
				bob := joiner.Register("bob")
				runtime.GC()
				sampler := startHeapSampler()
				b.StartTimer()
				began := time.Now()
				if _, err := bob.JoinRoom(ctx, string(roomID), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
					b.Fatalf("bob joins the big room: %v", err)
				}
				testnode.SendText(b, bob, roomID, "first")
				first = append(first, time.Since(began))
				testnode.WaitFor(b, 10*time.Minute, "the complete state", func() bool {
					return !joiner.Rooms.HasPartialState(ctx, roomID)
				})
				complete = append(complete, time.Since(began))
				b.StopTimer()
				heapGrowth = append(heapGrowth, sampler.stop())
				if n := len(joiner.Rooms.Members(ctx, roomID)); n != partialRoomMembers+2 {
					b.Fatalf("B knows %d members, want %d", n, partialRoomMembers+2)
				}
				fmt.Fprintf(os.Stderr, "%s: first message sent after %v, state complete after %v\n", mode.name, first[len(first)-1], complete[len(complete)-1])
				joiner.Stop()
				b.StartTimer()
			}
			b.ReportMetric(ms(percentile(first, 50)), "first-send-ms")
			if mode.partial {
				b.ReportMetric(ms(percentile(complete, 50)), "resync-ms")
			}
			b.ReportMetric(float64(slices.Max(heapGrowth))/(1<<20), "peak-heap-growth-MiB")
		})
	}
}
