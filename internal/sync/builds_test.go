package sync

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
)

// TestBuildsShareOneBuild checks that requests with the same key and the
// same notifier channel share one build and one encoding, and that a
// request whose channel is newer (it was woken after the build began) gets
// a build of its own.
func TestBuildsShareOneBuild(t *testing.T) {
	b := newBuilds(newWorkQueue(maxBuilds))
	key := buildKey{user: "@a:x", device: "D", since: Token{Pos: 7}}
	release := make(chan struct{})
	var runs atomic.Int32
	build := func(context.Context) (*Response, error) {
		runs.Add(1)
		<-release
		return &Response{NextBatch: "s8_0", news: true}, nil
	}
	wake := make(chan struct{})
	const requests = 20
	answers := make([]any, requests)
	var wg gosync.WaitGroup
	started := make(chan struct{}, requests)
	for i := range requests {
		wg.Go(func() {
			started <- struct{}{}
			f, err := b.do(context.Background(), key, wake, build)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			answers[i], err = f.answer()
			if err != nil {
				t.Errorf("request %d: answer: %v", i, err)
			}
		})
	}
	for range requests {
		<-started
	}
	// Every request has joined once the flight counts them all.
	for {
		b.mu.Lock()
		f := b.inFlight[key]
		joined := f != nil && f.users == requests
		b.mu.Unlock()
		if joined {
			break
		}
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d builds for %d identical requests, want 1", n, requests)
	}
	for i, a := range answers {
		raw, ok := a.(json.RawMessage)
		if !ok || string(raw) != `{"next_batch":"s8_0"}` {
			t.Fatalf("request %d: shared answer %T %s, want the encoding", i, a, raw)
		}
	}

	// A request woken after that build: a build of its own.
	f, err := b.do(context.Background(), key, make(chan struct{}), build)
	if err != nil {
		t.Fatal(err)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d builds after a newer wake-up, want 2", n)
	}
	if v, _ := f.answer(); v != f.resp {
		t.Fatalf("a build with one request answers %T, want the response itself", v)
	}
}

// TestBuildsPanicIsAnError checks that a build that panics on its own
// goroutine fails its requests instead of ending the process.
func TestBuildsPanicIsAnError(t *testing.T) {
	b := newBuilds(newWorkQueue(maxBuilds))
	_, err := b.do(context.Background(), buildKey{user: "@a:x"}, make(chan struct{}), func(context.Context) (*Response, error) {
		panic("boom")
	})
	if err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("a panicking build answered %v, want its panic as the error", err)
	}
}

// TestJoinHere checks that a parked long-poll's resume runs a build of its
// own on its own goroutine (the build is done when joinHere returns, and
// the callback is not used), joins a build in flight for the same request
// (one build, the callback run when it is done).
func TestJoinHere(t *testing.T) {
	b := newBuilds(newWorkQueue(maxBuilds))
	key := buildKey{user: "@a:x", device: "D", since: Token{Pos: 7}}
	var runs atomic.Int32
	release := make(chan struct{})
	build := func(context.Context) (*Response, error) {
		runs.Add(1)
		<-release
		return &Response{NextBatch: "s8_0", news: true}, nil
	}
	never := func(*flight) { t.Error("callback run for a build joinHere ran itself") }

	close(release)
	f := b.joinHere(context.Background(), key, make(chan struct{}), build, never)
	if f == nil || runs.Load() != 1 || f.resp.NextBatch != "s8_0" {
		t.Fatalf("joinHere with no build in flight returned %v after %d builds, want its own finished build", f, runs.Load())
	}
	select {
	case <-f.done:
	default:
		t.Fatal("the build joinHere ran is not done")
	}

	// A build in flight (a waiting handler's) is joined, not run again.
	release = make(chan struct{})
	wake := make(chan struct{})
	handler := make(chan *flight)
	go func() {
		f, _ := b.do(context.Background(), key, wake, build)
		handler <- f
	}()
	for runs.Load() != 2 {
		runtime.Gosched() // wait for the handler's build to start
	}
	joined := make(chan *flight, 1)
	if f := b.joinHere(context.Background(), key, wake, build, func(f *flight) { joined <- f }); f != nil {
		t.Fatal("joinHere returned a build still in flight")
	}
	close(release)
	fh, fj := <-handler, <-joined
	if fh != fj || fj.users != 2 || runs.Load() != 2 {
		t.Fatalf("joined build %p (users %d), handler's %p, %d builds: want one shared build", fj, fj.users, fh, runs.Load())
	}
}
