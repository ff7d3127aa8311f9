package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// parkDelay is how long a long-poll is given to reach the server and park
// before the send that should wake it.
const parkDelay = 20 * time.Millisecond

// pollTimeout is the long-poll timeout the scenarios ask for.
const pollTimeout = 30 * time.Second

type syncResult struct {
	resp *syncResponse
	at   time.Time
	err  error
}

// longPoll starts one /sync long-poll in the background.
func longPoll(ctx context.Context, c *client, since string) <-chan syncResult {
	ch := make(chan syncResult, 1)
	go func() {
		r, err := c.sync(ctx, since, pollTimeout, "")
		ch <- syncResult{r, time.Now(), err}
	}()
	return ch
}

// wakeup measures how long after a send starts a pending long-poll /sync
// of another member returns with the event.
func (b *bench) wakeup(ctx context.Context) ([]*result, error) {
	a, w, room, err := b.pair(ctx)
	if err != nil {
		return nil, err
	}
	first, err := w.sync(ctx, "", 0, `{"room":{"timeline":{"limit":1}}}`)
	if err != nil {
		return nil, err
	}
	since := first.NextBatch
	b.logf("wakeup: %d sends by %s, each waking %s's pending /sync", b.o.Iterations, a.userID, w.userID)
	wake, sendLat := &latencies{}, &latencies{}
	r := &result{Scenario: "wakeup", Params: map[string]any{"iterations": b.o.Iterations}}
	defer b.profile(ctx, "wakeup")()
	win := b.measure(ctx)
	lost := 0
	for i := range b.o.Iterations {
		if ctx.Err() != nil {
			break
		}
		ch := longPoll(ctx, w, since)
		time.Sleep(parkDelay)
		tag := fmt.Sprintf("%s-w%d", b.runID, i)
		t0 := time.Now()
		if _, err := a.send(ctx, room, tag); err != nil {
			r.Errors++
			r.Note = "first error: " + err.Error()
			<-ch // the poll ends by timeout or with the next iteration's data
			continue
		}
		sendLat.add(time.Since(t0))
		for {
			var res syncResult
			select {
			case res = <-ch:
			case <-time.After(pollTimeout + 10*time.Second):
				return nil, fmt.Errorf("wakeup: /sync did not return")
			}
			if res.err != nil {
				return nil, fmt.Errorf("wakeup: %w", res.err)
			}
			since = res.resp.NextBatch
			if slices.Contains(res.resp.tags(room), tag) {
				wake.add(res.at.Sub(t0))
				break
			}
			if res.at.Sub(t0) > pollTimeout {
				lost++
				break
			}
			ch = longPoll(ctx, w, since)
		}
	}
	s := wake.summary()
	win.finish(ctx, r, s.N, "wake-up")
	r.add("samples", float64(s.N), "")
	r.addLatency("", s)
	r.target("p99_ms", "< 2 ms", below(2))
	r.add("lost", float64(lost), "")
	r.target("lost", "0 (every event reaches the woken /sync)", func(v float64) bool { return v == 0 })
	r.Errors += lost
	ss := sendLat.summary()
	r.add("send_p50_ms", ms(ss.P50), "ms")
	r.add("send_p99_ms", ms(ss.P99), "ms")
	r.Note = join(r.Note, "wake-up is measured from the start of the send request, so it includes the send's commit")
	return []*result{r}, nil
}
