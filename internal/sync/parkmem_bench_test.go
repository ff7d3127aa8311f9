package sync_test

import (
	"fmt"
	"net"
	"net/url"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/testnode"
)

// BenchmarkParkedMemory holds 2,000 parked long-polls (over 10 users in
// one room, each on a TCP connection of its own, as the load tool's
// longpoll scenario holds them) and reports what each costs the process
// once the garbage collector has run: heap-B/poll and objects/poll (live
// heap), stack-B/poll and goroutines/poll. The figures include the test's
// own end of each connection (a net.Conn, no goroutine or buffer: about
// 300 bytes and 4 objects), the same before and after a change.
// alloc-B/poll is the heap allocated while they were opened and parked,
// per poll: the garbage a wave of new long-polls leaves.
//
//	go test -run '^$' -bench ParkedMemory -benchtime 3x ./internal/sync/
func BenchmarkParkedMemory(b *testing.B) {
	const users, polls = 10, 2000
	n := testnode.Start(b, testnode.SQLite)
	owner := n.Register("owner")
	room := testnode.PublicRoom(b, owner)
	paths := make([]string, users)
	tokens := make([]string, users)
	for i := range users {
		c := n.Register(fmt.Sprintf("poller%d", i))
		if _, err := c.JoinRoomByID(b.Context(), room); err != nil {
			b.Fatal(err)
		}
		tokens[i] = c.AccessToken
	}
	for i := range users {
		since, _, err := syncOnce(n.Handler(), tokens[i], "", "", 0)
		if err != nil {
			b.Fatal(err)
		}
		paths[i] = "/_matrix/client/v3/sync?" + url.Values{"since": {since}, "timeout": {"600000"}, "set_presence": {"offline"}}.Encode()
	}
	var heap, objects, stack, goroutines, allocated float64
	for b.Loop() {
		h0, o0, s0, g0 := memNow()
		a0 := allocatedNow()
		conns := make([]net.Conn, polls)
		for i := range conns {
			conn, err := net.Dial("tcp", n.Addr)
			if err != nil {
				b.Fatal(err)
			}
			conns[i] = conn
			getOn(b, conn, paths[i%users], tokens[i%users])
		}
		testnode.WaitFor(b, time.Minute, "every long-poll waiting", func() bool { return n.Sync.Waiting() == polls })
		a1 := allocatedNow()
		h1, o1, s1, g1 := memNow()
		allocated += float64(a1-a0) / polls
		heap += float64(h1-h0) / polls
		objects += float64(o1-o0) / polls
		stack += float64(s1-s0) / polls
		goroutines += float64(g1-g0) / polls
		for _, c := range conns {
			c.Close()
		}
		testnode.WaitFor(b, time.Minute, "every long-poll gone", func() bool { return n.Sync.Waiting() == 0 })
	}
	rounds := float64(b.N)
	b.ReportMetric(heap/rounds, "heap-B/poll")
	b.ReportMetric(objects/rounds, "objects/poll")
	b.ReportMetric(stack/rounds, "stack-B/poll")
	b.ReportMetric(goroutines/rounds, "goroutines/poll")
	b.ReportMetric(allocated/rounds, "alloc-B/poll")
}

// allocatedNow is the heap allocated since the process started, bytes.
func allocatedNow() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// memNow is the live heap (bytes and objects), the goroutine stacks'
// memory and the number of goroutines, after a garbage collection.
func memNow() (heap, objects, stack, goroutines int64) {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/objects:objects"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(s)
	return int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64()), int64(s[2].Value.Uint64()), int64(s[3].Value.Uint64())
}
