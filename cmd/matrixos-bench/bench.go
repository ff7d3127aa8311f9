package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bench holds one run's state: options, the registered users and the
// phases' figures.
type bench struct {
	o       *options
	log     io.Writer
	hc      *http.Client
	runID   string
	retries atomic.Int64

	pool       []*client
	next       int
	fanoutPool []*client

	setupPeak int64 // RSS peak while registering users
	startRSS  int64 // RSS when the scenarios began
	profiled  bool  // a CPU profile has been taken
	ledgerRun int   // ledger scenarios run so far (their order alternates)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// usersNeeded counts the users the chosen scenarios take from the pool
// in runs runs (the fan-out members are taken once and reused).
func (b *bench) usersNeeded(runs int) int {
	n := 0
	for _, s := range b.o.Scenarios {
		switch s {
		case "send":
			n += (1 + b.o.Senders) * runs
		case "ledger":
			n += 2 * (1 + b.o.Senders) * runs
		case "wakeup", "sliding":
			n += 2 * runs
		case "fanout":
			maxU := 0
			for _, u := range b.o.Users {
				maxU = max(maxU, u)
			}
			n += 1 + maxU
		case "initialsync":
			n += runs
		case "longpoll":
			n += b.o.LongpollUsers * runs
		}
	}
	return n
}

// registerAll creates n users (in parallel, --setup-concurrency at a time)
// and keeps them logged in for the scenarios.
func (b *bench) registerAll(ctx context.Context, n int) error {
	start := time.Now()
	b.pool = make([]*client, n)
	var done atomic.Int64
	err := parallel(ctx, n, b.o.Concurrency, func(i int) error {
		c := b.newClient()
		localpart := fmt.Sprintf("bench%su%d", b.runID, i)
		var err error
		if b.o.Register == "shared-secret" {
			err = c.registerShared(ctx, localpart, b.o.Password, b.o.SharedSecret)
		} else {
			err = c.registerOpen(ctx, localpart, b.o.Password)
		}
		if err != nil {
			return err
		}
		b.pool[i] = c
		if d := done.Add(1); d%50 == 0 {
			b.logf("registered %d/%d users", d, n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.logf("registered %d users in %v", n, time.Since(start).Round(time.Millisecond))
	return nil
}

func (b *bench) newClient() *client {
	return &client{base: b.o.URL, hc: b.hc, retries: &b.retries}
}

// take hands out the next n registered users.
func (b *bench) take(n int) []*client {
	if b.next+n > len(b.pool) {
		panic("matrixos-bench: user pool exhausted")
	}
	out := b.pool[b.next : b.next+n]
	b.next += n
	return out
}

// pair takes two users from the pool: a creates a public room, which w
// then joins.
func (b *bench) pair(ctx context.Context) (a, w *client, room string, err error) {
	users := b.take(2)
	a, w = users[0], users[1]
	if room, err = a.createRoom(ctx, "public_chat"); err != nil {
		return nil, nil, "", err
	}
	if err := w.join(ctx, room); err != nil {
		return nil, nil, "", err
	}
	return a, w, room, nil
}

// parallel runs fn(0..n-1), at most conc at a time, and returns the first
// error.
func parallel(parent context.Context, n, conc int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range min(conc, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return parent.Err()
}

// profile fetches a CPU profile (--pprof-seconds long) from the server's
// pprof listener into --pprof-out when key names the --pprof-scenario; it
// runs in the background and the returned function waits for it. Only the
// first matching phase is profiled.
func (b *bench) profile(ctx context.Context, key string) (wait func()) {
	want := b.o.PprofScenario
	if b.o.Pprof == "" || b.profiled || !(key == want || (want == "fanout" && strings.HasPrefix(key, "fanout"))) {
		return func() {}
	}
	b.profiled = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		u := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", b.o.Pprof, b.o.PprofSeconds)
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.logf("pprof: %v", err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.logf("pprof: HTTP %d", resp.StatusCode)
			return
		}
		f, err := os.Create(b.o.PprofOut)
		if err != nil {
			b.logf("pprof: %v", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			b.logf("pprof: %v", err)
			return
		}
		b.logf("CPU profile (%ds) written to %s", b.o.PprofSeconds, b.o.PprofOut)
	}()
	return func() { <-done }
}
