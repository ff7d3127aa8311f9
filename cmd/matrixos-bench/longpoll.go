package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// longpoll holds C concurrent long-polling /sync connections (spread over
// a few users in one room), then sends one message and checks that every
// connection returns it without error. It reports the server's RSS while
// the connections are held.
func (b *bench) longpoll(ctx context.Context) ([]*result, error) {
	c, nu := b.o.Connections, b.o.LongpollUsers
	users := b.take(nu)
	sender := users[0]
	room, err := sender.createRoom(ctx, "public_chat")
	if err != nil {
		return nil, err
	}
	if err := parallel(ctx, nu-1, b.o.Concurrency, func(i int) error { return users[i+1].join(ctx, room) }); err != nil {
		return nil, err
	}
	since := make([]string, nu)
	for i, u := range users {
		resp, err := u.sync(ctx, "", 0, `{"room":{"timeline":{"limit":1}}}`)
		if err != nil {
			return nil, err
		}
		since[i] = resp.NextBatch
	}
	var rssBefore int64
	if b.o.PID != 0 {
		rssBefore, _, _ = memStatus(b.o.PID)
	}
	b.logf("longpoll: opening %d long-polling /sync connections (%d users)", c, nu)
	tag := b.runID + "-longpoll"
	var sent atomic.Int64 // send start, Unix nanoseconds
	var errs atomic.Int64
	var firstErr atomic.Value
	lat := &latencies{}
	// Each connection gets its own HTTP client so none shares a TCP
	// connection with another.
	pctx, cancel := context.WithTimeout(ctx, 2*pollTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range c {
		u := users[i%nu]
		cl := &client{base: u.base, hc: newHTTPClient(), token: u.token, userID: u.userID, retries: &b.retries}
		tok := since[i%nu]
		wg.Go(func() {
			defer cl.hc.CloseIdleConnections()
			for pctx.Err() == nil {
				resp, err := cl.sync(pctx, tok, pollTimeout, "")
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				if slices.Contains(resp.tags(room), tag) {
					lat.add(time.Since(time.Unix(0, sent.Load())))
					return
				}
				tok = resp.NextBatch
			}
		})
		if i%500 == 499 {
			time.Sleep(50 * time.Millisecond) // do not flood the accept queue
		}
	}
	// Let every request reach the server and park.
	time.Sleep(2*time.Second + time.Duration(c)*200*time.Microsecond)
	r := &result{Scenario: "longpoll", Params: map[string]any{"connections": c, "users": nu}}
	if b.o.PID != 0 {
		rss, _, _ := memStatus(b.o.PID)
		r.add("rss_held_mib", mib(rss), "MiB")
		r.add("kib_per_connection", math.Round(float64(rss-rssBefore)/1024/float64(c)*10)/10, "KiB")
	}
	waitProfile := b.profile(ctx, "longpoll")
	win := b.measure(ctx)
	sent.Store(time.Now().UnixNano())
	if _, err := sender.send(ctx, room, tag); err != nil {
		return nil, fmt.Errorf("longpoll: send: %w", err)
	}
	wg.Wait()
	win.finish(ctx, r, c, "wake-up")
	waitProfile()
	s := lat.summary()
	r.Errors = int(errs.Load())
	if e := firstErr.Load(); e != nil {
		r.Note = "first error: " + e.(string)
	}
	r.add("returned", float64(s.N), "")
	r.target("returned", fmt.Sprintf("= %d, no errors", c), func(v float64) bool { return int(v) == c && errs.Load() == 0 })
	r.addLatency("wake_", s)
	return []*result{r}, nil
}
