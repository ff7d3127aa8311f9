package federation

import "time"

// SetMaxQueuedPDUs lowers the outbox's bound on the PDUs queued for a
// failing destination.
func SetMaxQueuedPDUs(o *Outbox, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.maxQueued[classPDU] = n
}

// SetMaxQueuedEDUs lowers the outbox's bounds on the ephemeral and the
// durable EDUs queued for a destination.
func SetMaxQueuedEDUs(o *Outbox, ephemeral, durable int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.maxQueued[classEphemeral], o.maxQueued[classDurable] = ephemeral, durable
}

// SetBatchDelay sets how long the outbox's busy workers gather a batch.
func SetBatchDelay(o *Outbox, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batchDelay = d
}
