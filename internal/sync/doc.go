// Package sync owns /sync: the stream tokens, the long-poll wake-ups
// (Notifier), filters, and the assembly of sync responses from the room
// timeline plus every Source that other packages register (account data,
// receipts, typing, presence, to-device messages, device lists, ...).
// Identical /sync requests woken together share one build and one JSON
// encoding, and builds run off the connection's goroutine so that a
// waiting long-poll holds a small stack (builds.go); where its
// connection can leave net/http (httppark), a waiting long-poll holds
// no goroutine at all (park.go).
//
// It also serves simplified sliding sync (MSC4186, sliding*.go): room
// lists ordered by bump stamp, room subscriptions and extensions, with
// per-connection state (connStore) in memory. A response follows its
// predecessor's room list from the events since (slidingfollow.go) and
// visits only the rooms they touched, unless a membership, the request
// or the user's direct rooms changed. Sliding sync builds its
// rooms with the same timeline, state delta, summary and stripped-state
// functions as /sync, and its extensions and unread counts by running the
// same Sources on a /sync Request whose filter and Skip parts select
// what the client enabled; the thread_subscriptions extension (MSC4308)
// asks the ThreadSubscriptions hook.
package sync
