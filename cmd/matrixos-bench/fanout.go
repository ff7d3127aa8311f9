package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fanoutUsers is the sender plus the largest member set; each fan-out run
// uses the first u members.
func (b *bench) fanoutUsers() []*client {
	if b.fanoutPool == nil {
		maxU := 0
		for _, u := range b.o.Users {
			maxU = max(maxU, u)
		}
		b.fanoutPool = b.take(1 + maxU)
	}
	return b.fanoutPool
}

// fanout puts u members in one room, each long-polling /sync, then sends
// messages one at a time (the next once every member has the previous
// one) and records when each member's /sync returned each message.
func (b *bench) fanout(ctx context.Context, u int) (*result, error) {
	users := b.fanoutUsers()
	sender, members := users[0], users[1:1+u]
	room, err := sender.createRoom(ctx, "public_chat")
	if err != nil {
		return nil, err
	}
	if err := parallel(ctx, u, b.o.Concurrency, func(i int) error { return members[i].join(ctx, room) }); err != nil {
		return nil, err
	}
	since := make([]string, u)
	err = parallel(ctx, u, b.o.Concurrency, func(i int) error {
		resp, err := members[i].sync(ctx, "", 0, `{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`)
		if err == nil {
			since[i] = resp.NextBatch
		}
		return err
	})
	if err != nil {
		return nil, err
	}

	m := b.o.FanoutMessages
	prefix := fmt.Sprintf("%s-f%d-", b.runID, u)
	arrivals := make([][]time.Time, u) // member -> message -> first seen
	received := make([]atomic.Int32, m)
	all := make([]chan struct{}, m)
	for i := range all {
		all[i] = make(chan struct{})
	}
	var pollErrs atomic.Int64
	pctx, stopPolls := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for j := range members {
		arrivals[j] = make([]time.Time, m)
		wg.Go(func() {
			tok := since[j]
			for pctx.Err() == nil {
				resp, err := members[j].sync(pctx, tok, pollTimeout, "")
				now := time.Now()
				if err != nil {
					if pctx.Err() == nil {
						pollErrs.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				tok = resp.NextBatch
				for _, tag := range resp.tags(room) {
					i, err := strconv.Atoi(strings.TrimPrefix(tag, prefix))
					if !strings.HasPrefix(tag, prefix) || err != nil || i < 0 || i >= m || !arrivals[j][i].IsZero() {
						continue
					}
					arrivals[j][i] = now
					if received[i].Add(1) == int32(u) {
						close(all[i])
					}
				}
			}
		})
	}
	// Let every member's first long-poll reach the server.
	time.Sleep(500*time.Millisecond + time.Duration(u)*2*time.Millisecond)
	b.logf("fanout: %d messages to %d long-polling members", m, u)
	waitProfile := b.profile(ctx, "fanout"+strconv.Itoa(u))
	win := b.measure(ctx)
	starts := make([]time.Time, m)
	r := &result{Scenario: "fanout", Params: map[string]any{"members": u, "messages": m}}
	missing := 0
	for i := range m {
		if ctx.Err() != nil {
			break
		}
		starts[i] = time.Now()
		if _, err := sender.send(ctx, room, prefix+strconv.Itoa(i)); err != nil {
			r.Errors++
			r.Note = "first error: " + err.Error()
			continue
		}
		select {
		case <-all[i]:
		case <-time.After(10 * time.Second):
			missing += u - int(received[i].Load())
		case <-ctx.Done():
		}
		// Let the members' next long-polls park again.
		time.Sleep(50 * time.Millisecond)
	}
	stopPolls()
	wg.Wait()
	waitProfile()

	// A message is lost for a member whose long-polls, woken over and over
	// until the end, never returned it.
	sent, lost := 0, 0
	for i := range m {
		if starts[i].IsZero() {
			continue
		}
		sent++
		for j := range u {
			if arrivals[j][i].IsZero() {
				lost++
			}
		}
	}

	per, worst := &latencies{}, &latencies{}
	for i := range m {
		if starts[i].IsZero() {
			continue
		}
		var w time.Duration
		for j := range u {
			if t := arrivals[j][i]; !t.IsZero() {
				d := t.Sub(starts[i])
				per.add(d)
				w = max(w, d)
			}
		}
		worst.add(w)
	}
	s := per.summary()
	win.finish(ctx, r, s.N, "delivery")
	r.add("deliveries", float64(s.N), "")
	r.addLatency("", s)
	switch {
	case u <= 50:
		r.target("p99_ms", "< 30 ms (50 members)", below(30))
	case u <= 200:
		r.target("p99_ms", "< 30 ms (200 members)", below(30))
	}
	r.add("lost", float64(lost), "")
	r.target("lost", "0 (every member's /sync returns every message)", func(v float64) bool { return v == 0 })
	ws := worst.summary()
	r.add("all_members_p50_ms", ms(ws.P50), "ms")
	r.add("all_members_p99_ms", ms(ws.P99), "ms")
	if missing > 0 {
		r.Note = join(r.Note, fmt.Sprintf("%d deliveries still missing 10 s after their send", missing))
	}
	r.Errors += lost
	if n := pollErrs.Load(); n > 0 {
		r.Errors += int(n)
		r.Note = join(r.Note, fmt.Sprintf("%d /sync errors", n))
	}
	return r, nil
}
