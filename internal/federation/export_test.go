package federation

// SetMaxQueuedPDUs lowers the outbox's bound on the PDUs queued for a
// failing destination.
func SetMaxQueuedPDUs(o *Outbox, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.maxQueuedPDUs = n
}
