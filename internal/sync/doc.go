// Package sync owns /sync: the stream tokens, the long-poll wake-ups
// (Notifier), filters, and the assembly of sync responses from the room
// timeline plus every Source that other packages register (account data,
// receipts, typing, presence, to-device messages, device lists, ...).
package sync
