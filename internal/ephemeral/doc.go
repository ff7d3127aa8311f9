// Package ephemeral owns the per-room and per-user signals that are not
// room events: typing notifications (in memory, ordered by the sync
// service's ephemeral serial), read receipts and read markers (durable,
// ordered by node stream positions) and presence (in memory with a durable
// copy). Each has its endpoints and a sync.Source.
package ephemeral
