package main

import (
	"context"
	"fmt"
	"time"
)

// initialSync fills R rooms with H messages each for one user, then times
// that user's initial /sync (no since token, no filter).
func (b *bench) initialSync(ctx context.Context) ([]*result, error) {
	c := b.take(1)[0]
	rooms := make([]string, b.o.Rooms)
	for i := range rooms {
		room, err := c.createRoom(ctx, "private_chat")
		if err != nil {
			return nil, err
		}
		rooms[i] = room
	}
	b.logf("initialsync: filling %d rooms with %d messages each", b.o.Rooms, b.o.Events)
	err := parallel(ctx, len(rooms), b.o.Concurrency, func(i int) error {
		for j := range b.o.Events {
			if _, err := c.send(ctx, rooms[i], fmt.Sprintf("%s-i%d-%d", b.runID, i, j)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r := &result{Scenario: "initialsync", Params: map[string]any{"rooms": b.o.Rooms, "events": b.o.Events, "iterations": b.o.SyncIterations}}
	// The first sync after filling may find caches cold; report it apart.
	t0 := time.Now()
	resp, err := c.sync(ctx, "", 0, "")
	if err != nil {
		return nil, err
	}
	first := time.Since(t0)
	if len(resp.Rooms.Join) != len(rooms) {
		r.Errors++
		r.Note = fmt.Sprintf("initial sync listed %d joined rooms, want %d", len(resp.Rooms.Join), len(rooms))
	}
	lat := &latencies{}
	waitProfile := b.profile(ctx, "initialsync")
	defer waitProfile()
	win := b.measure(ctx)
	for range b.o.SyncIterations {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		if _, err := c.sync(ctx, "", 0, ""); err != nil {
			return nil, err
		}
		lat.add(time.Since(t0))
	}
	s := lat.summary()
	win.finish(ctx, r, s.N, "sync")
	r.add("first_ms", ms(first), "ms")
	r.add("p50_ms", ms(s.P50), "ms")
	r.target("p50_ms", "< 15 ms", below(15))
	r.add("p99_ms", ms(s.P99), "ms")
	r.add("min_ms", ms(s.Min), "ms")
	r.add("response_kib", float64(resp.size/1024), "KiB")
	return []*result{r}, nil
}
