package sync

import (
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"
)

// TestWakeWhileCancelling wakes parked functions while others take
// theirs back: each one not taken back runs once, and none runs twice
// (run with -race: the wake-up read the functions' map while a cancel
// wrote it).
func TestWakeWhileCancelling(t *testing.T) {
	for _, many := range []int{10, 2000} {
		n := NewNotifier()
		const user = id.UserID("@a:x")
		ch := n.Channel(user)
		runs := make([]atomic.Int32, many)
		cancels := make([]func(), many)
		for i := range many {
			cancel, ok := n.OnWake(user, ch, func() { runs[i].Add(1) })
			if !ok {
				t.Fatal("OnWake refused an open channel")
			}
			cancels[i] = cancel
		}
		var wg gosync.WaitGroup
		wg.Go(func() {
			for i := 0; i < many; i += 2 {
				cancels[i]()
			}
		})
		n.Wake(user)
		wg.Wait()
		<-ch
		for i := range runs {
			if r := runs[i].Load(); r > 1 || i%2 == 1 && r != 1 {
				t.Fatalf("%d parked: function %d ran %d times", many, i, r)
			}
		}
	}
}

// TestWakeManyParkedOffTheWaker: a wake-up of more than inlineParked
// parked functions leaves them to run (one job), so the waking goroutine
// (the database writer) does not run them; fewer run on it.
func TestWakeManyParkedOffTheWaker(t *testing.T) {
	for _, tc := range []struct {
		parked int
		jobs   int
	}{{inlineParked, 0}, {inlineParked + 1, 1}, {10000, 1}} {
		n := NewNotifier()
		var jobs []func()
		n.run = func(job func()) { jobs = append(jobs, job) }
		var ran atomic.Int32
		users := make([]id.UserID, 10)
		for u := range users {
			users[u] = id.UserID(fmt.Sprintf("@u%d:x", u))
		}
		for i := range tc.parked {
			u := users[i%len(users)]
			if _, ok := n.OnWake(u, n.Channel(u), func() { ran.Add(1) }); !ok {
				t.Fatal("OnWake refused an open channel")
			}
		}
		n.Wake(users...)
		if len(jobs) != tc.jobs {
			t.Fatalf("%d parked: %d jobs, want %d", tc.parked, len(jobs), tc.jobs)
		}
		if tc.jobs == 0 && int(ran.Load()) != tc.parked {
			t.Fatalf("%d parked: %d ran on the waker, want all", tc.parked, ran.Load())
		}
		if tc.jobs > 0 && ran.Load() != 0 {
			t.Fatalf("%d parked: %d ran on the waker, want none", tc.parked, ran.Load())
		}
		for _, job := range jobs {
			job()
		}
		if int(ran.Load()) != tc.parked {
			t.Fatalf("%d parked: %d ran in all", tc.parked, ran.Load())
		}
	}
}

// BenchmarkWakeParked is the waking goroutine's time (the database
// writer's) to wake 10,000 parked long-polls of 10 users, each of whose
// functions does what a parked /sync's does (take back its registration,
// queue its resume), with those functions run on it (inline) or left to
// the workers (workers).
func BenchmarkWakeParked(b *testing.B) {
	users := make([]id.UserID, 10)
	for u := range users {
		users[u] = id.UserID(fmt.Sprintf("@u%d:x", u))
	}
	for _, off := range []bool{false, true} {
		name := "inline"
		if off {
			name = "workers"
		}
		b.Run(name, func(b *testing.B) {
			q := newWorkQueue(maxBuilds)
			for b.Loop() {
				b.StopTimer()
				n := NewNotifier()
				if off {
					n.run = q.add
				}
				var wg gosync.WaitGroup
				for i := range 10000 {
					u := users[i%len(users)]
					var cancel func()
					wg.Add(1)
					c, _ := n.OnWake(u, n.Channel(u), func() {
						cancel()
						q.add(wg.Done)
					})
					cancel = c
				}
				b.StartTimer()
				n.Wake(users...)
				b.StopTimer()
				wg.Wait()
				b.StartTimer()
			}
		})
	}
}
