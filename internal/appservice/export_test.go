package appservice

import "time"

// SetTiming shortens the queue's batching and backoff for tests.
func SetTiming(q *Queue, batch, minBackoff, maxBackoff time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.batchDelay, q.minBackoff, q.maxBackoff = batch, minBackoff, maxBackoff
	for _, t := range q.targets {
		t.retryAt = time.Time{}
	}
}

// SetMaxQueued lowers the bound on what is queued per appservice.
func SetMaxQueued(q *Queue, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.maxQueued = n
}
