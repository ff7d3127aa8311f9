package sync

import (
	gosync "sync"
	"time"
)

// workQueue runs functions in the order they were added, on at most max
// goroutines. The goroutines start when work comes and linger for a
// while when there is none, so that the next wave of work (the builds
// and answers of the long-polls the next send wakes) finds them with
// the stacks the last one grew: a fresh goroutine grows its stack again
// through the deep build and encoding, copying it at each doubling, and
// that was a sixth of the server's CPU in fan-out to 200 long-polls.
type workQueue struct {
	max    int
	linger time.Duration

	mu      gosync.Mutex
	jobs    []func()
	head    int           // jobs[head:] wait
	running int           // goroutines
	idle    int           // of them waiting for a job, not yet told of one
	told    chan struct{} // one value for each idle goroutine told of a job
}

// lingerFor is how long a worker without work waits for more.
const lingerFor = 10 * time.Second

func newWorkQueue(max int) *workQueue {
	return &workQueue{max: max, linger: lingerFor, told: make(chan struct{}, max)}
}

// add queues job; it must not wait for another job of q.
func (q *workQueue) add(job func()) {
	q.mu.Lock()
	q.jobs = append(q.jobs, job)
	switch {
	case q.idle > 0:
		q.idle--
		q.told <- struct{}{} // never blocks: at most max are idle
		q.mu.Unlock()
	case q.running < q.max:
		q.running++
		q.mu.Unlock()
		go q.work()
	default:
		q.mu.Unlock()
	}
}

// onWorker runs fn on one of q's goroutines and waits for it, so that
// the stack fn grows stays with q's goroutines, not with the caller's (a
// connection's goroutine that may then wait long); a panic comes back as
// an error, as the HTTP server's recovery would have made it on the
// caller's goroutine. It must not be called from a job of q.
func onWorker[T any](q *workQueue, fn func() (T, error)) (v T, err error) {
	done := make(chan struct{})
	q.add(func() {
		v, err = recovered(fn)
		close(done)
	})
	<-done
	return v, err
}

func (q *workQueue) work() {
	var timer *time.Timer
	for {
		q.mu.Lock()
		if q.head < len(q.jobs) {
			job := q.jobs[q.head]
			q.jobs[q.head] = nil
			q.head++
			if q.head == len(q.jobs) {
				q.jobs, q.head = q.jobs[:0], 0
			}
			q.mu.Unlock()
			job()
			continue
		}
		q.idle++
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(q.linger)
		} else {
			timer.Reset(q.linger)
		}
		select {
		case <-q.told:
			timer.Stop()
			continue
		case <-timer.C:
		}
		q.mu.Lock()
		select {
		case <-q.told: // told just as it gave up
			q.mu.Unlock()
			continue
		default:
		}
		q.idle--
		q.running--
		q.mu.Unlock()
		return
	}
}
