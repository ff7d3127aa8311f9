package sync

import (
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkQueue: jobs run in the order added, on at most max
// goroutines, which linger after a wave of jobs (and take the next one)
// and end once there was none for the linger time.
func TestWorkQueue(t *testing.T) {
	q := newWorkQueue(3)
	q.linger = 200 * time.Millisecond
	running := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.running
	}
	for wave := range 2 {
		var mu gosync.Mutex
		var order []int
		var now, most atomic.Int32
		var wg gosync.WaitGroup
		for i := range 200 {
			wg.Add(1)
			q.add(func() {
				defer wg.Done()
				n := now.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				now.Add(-1)
			})
		}
		wg.Wait()
		if m := most.Load(); m > 3 {
			t.Fatalf("wave %d: %d jobs at once, want at most 3", wave, m)
		}
		// Taken in order; with several workers, each job starts after
		// those taken before it began.
		if len(order) != 200 {
			t.Fatalf("wave %d: %d jobs ran, want 200", wave, len(order))
		}
		if r := running(); r == 0 || r > 3 {
			t.Fatalf("wave %d: %d workers right after the wave, want 1 to 3 lingering", wave, r)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for running() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still running long after their linger time", running())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// One worker: strictly in order.
	one := newWorkQueue(1)
	var order []int
	done := make(chan struct{})
	for i := range 50 {
		one.add(func() {
			order = append(order, i)
			if i == 49 {
				close(done)
			}
		})
	}
	<-done
	for i, v := range order {
		if v != i {
			t.Fatalf("one worker ran job %d as number %d", v, i)
		}
	}
}

// TestOnWorkerPanic: a panic in a function run on a worker comes back
// as an error and leaves the worker serving.
func TestOnWorkerPanic(t *testing.T) {
	q := newWorkQueue(1)
	_, err := onWorker(q, func() (int, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Fatalf("a panicking function returned %v, want its panic as the error", err)
	}
	if v, err := onWorker(q, func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("after a panic: %d, %v", v, err)
	}
}
