package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// send measures throughput and latency of K concurrent senders, each
// sending N messages one after another into one room, or into R rooms in
// turn (every sender is in every room; sender i's j-th message goes to
// room (i+j) mod R). Afterwards it checks that the server has no backlog: the
// rooms' creator (who sends nothing) must already see every message
// counted in its unread notifications.
func (b *bench) send(ctx context.Context) ([]*result, error) {
	return b.sendInto(ctx, false)
}

// ledgerStateType is Matrix OS's state event that turns a room's ledger on
// (docs/ledger.md); other servers keep it as any other state.
const ledgerStateType = "org.matrixos.ledger"

// sendLedger runs send twice on the same server, side by side: into rooms
// without the ledger and into rooms whose creator turned it on (the
// scenarios send and send_ledger). The order alternates from run to run,
// so neither always runs on the warmer server.
func (b *bench) sendLedger(ctx context.Context) ([]*result, error) {
	order := []bool{false, true}
	if b.ledgerRun%2 == 1 {
		order = []bool{true, false}
	}
	b.ledgerRun++
	var out []*result
	for _, on := range order {
		rs, err := b.sendInto(ctx, on)
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// sendInto is the send scenario, in rooms with the ledger on when ledger
// is set (reported as send_ledger).
func (b *bench) sendInto(ctx context.Context, ledger bool) ([]*result, error) {
	k, n := b.o.Senders, b.o.Messages
	users := b.take(1 + k)
	owner, senders := users[0], users[1:]
	rooms := make([]string, b.o.SendRooms)
	for i := range rooms {
		room, err := owner.createRoom(ctx, "public_chat")
		if err != nil {
			return nil, err
		}
		if ledger {
			if err := owner.setState(ctx, room, ledgerStateType, map[string]any{"enabled": true}); err != nil {
				return nil, fmt.Errorf("turn the ledger on: %w", err)
			}
		}
		rooms[i] = room
	}
	err := parallel(ctx, k*len(rooms), b.o.Concurrency, func(i int) error {
		return senders[i/len(rooms)].join(ctx, rooms[i%len(rooms)])
	})
	if err != nil {
		return nil, err
	}
	scenario := "send"
	if ledger {
		scenario = "send_ledger"
	}
	b.logf("%s: %d senders x %d messages into %d room(s)", scenario, k, n, len(rooms))

	win := b.measure(ctx)
	waitProfile := b.profile(ctx, scenario)
	lat := &latencies{}
	var errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for s, c := range senders {
		wg.Go(func() {
			for i := range n {
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if _, err := c.send(ctx, rooms[(s+i)%len(rooms)], fmt.Sprintf("%s-s%d-%d", b.runID, s, i)); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat.add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	r := &result{Scenario: scenario, Params: map[string]any{"senders": k, "messages": n, "rooms": len(rooms)}, Errors: int(errs.Load())}
	if e := firstErr.Load(); e != nil {
		r.Note = "first error: " + e.(string)
	}
	s := lat.summary()
	r.add("events", float64(s.N), "")
	r.add("wall_ms", ms(wall), "ms")
	r.add("throughput_eps", float64(int(float64(s.N)/wall.Seconds()*10))/10, "events/s")
	r.target("throughput_eps", ">= 2000 events/s", atLeast(2000))
	r.addLatency("", s)
	r.target("p99_ms", "< 20 ms", below(20))
	win.finish(ctx, r, s.N, "event")
	r.target("cpu_ms_per_op", "< 0.5 ms per event", below(0.5))

	// Backlog: how long after the burst until the observer's unread count
	// covers every message.
	backlog, count, counted := b.settle(ctx, owner, rooms, s.N)
	r.add("unread_count", float64(count), "")
	if counted {
		r.add("backlog_ms", ms(backlog), "ms")
		r.target("backlog_ms", "0 (counts done when the burst ends)", func(v float64) bool { return v == 0 })
	} else {
		r.Note = join(r.Note, fmt.Sprintf("unread count did not reach %d within %v", s.N, b.o.SettleTimeout))
	}
	if b.o.PID != 0 {
		c0, err0 := cpuTime(b.o.PID)
		time.Sleep(time.Second)
		c1, err1 := cpuTime(b.o.PID)
		if err0 == nil && err1 == nil {
			r.add("server_cpu_after_pct", float64(int((c1-c0).Seconds()*1000))/10, "%cpu")
		}
	}
	waitProfile()
	return []*result{r}, nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// settle polls the observer's unread notification counts in rooms until
// they add up to want. It returns 0 when the first poll already shows
// every message, otherwise the time from the end of the burst until it
// did. counted is false when the count never got there (the server counts
// nothing, or too slowly for --settle-timeout).
func (b *bench) settle(ctx context.Context, c *client, rooms []string, want int) (backlog time.Duration, count int, counted bool) {
	end := time.Now()
	ids, _ := json.Marshal(rooms)
	filter := fmt.Sprintf(`{"room":{"rooms":%s,"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`, ids)
	deadline := end.Add(b.o.SettleTimeout)
	lastChange, last := end, -1
	for first := true; ; first = false {
		resp, err := c.sync(ctx, "", 0, filter)
		if err == nil {
			count = 0
			for _, room := range rooms {
				count += resp.Rooms.Join[room].Unread.Notifications
			}
			if count >= want {
				if first {
					return 0, count, true
				}
				return time.Since(end), count, true
			}
			if count != last {
				last, lastChange = count, time.Now()
			}
		}
		// A server that reports no counts at all: stop after 3 s.
		if count == 0 && time.Since(lastChange) > 3*time.Second {
			return 0, count, false
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, count, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
