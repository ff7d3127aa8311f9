package appservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/matrixos/matrixos/internal/storage"
)

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

// EnqueueInOneWrite queues n device list changes for the appservice in one
// write, which fails after queueing them when fail is set; it returns how
// many the queue took.
func EnqueueInOneWrite(q *Queue, asID string, n int, fail bool) (int, error) {
	ctx := context.Background()
	took := 0
	errFail := errors.New("the write fails")
	err := q.db.Write(ctx, func(tx *storage.Tx) error {
		for i := range n {
			ok, err := q.enqueue(ctx, tx, asID, kindDeviceList, fmt.Appendf(nil, `{"user_id":"@u%d:localhost"}`, i))
			if err != nil {
				return err
			}
			if ok {
				took++
			}
		}
		if fail {
			return errFail
		}
		return nil
	})
	if fail && errors.Is(err, errFail) {
		err = nil
	}
	return took, err
}

// QueuedRows counts the rows of kind queued for the appservice.
func QueuedRows(q *Queue, asID, kind string) (int, error) {
	var n int
	err := q.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM appservice_queue WHERE appservice_id = $1 AND kind = $2`, asID, kind).Scan(&n)
	return n, err
}

// EnqueueRaw queues an item of kind with body as it is, as a corrupted
// row would be.
func EnqueueRaw(q *Queue, asID, kind, body string) error {
	ctx := context.Background()
	return q.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := q.enqueue(ctx, tx, asID, kind, []byte(body))
		return err
	})
}
