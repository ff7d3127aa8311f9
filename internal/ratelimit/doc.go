// Package ratelimit limits request rates with token buckets
// (golang.org/x/time/rate) kept in memory: one bucket per (kind, user) for
// authenticated requests and per (kind, client IP) for the others. Kinds
// are login, register, send and upload; Middleware picks register, send
// and upload from the request's route, while the accounts service takes a
// login token (Allow) for each password or token it checks, from the
// buckets of the client IP and of the account, and the OAuth pages take a
// register token from the client IP's bucket for each authorization
// request and each browser session they start.
//
// A bucket holds up to Burst tokens and refills at PerMinute tokens a
// minute; each request takes one. An empty bucket answers 429
// M_LIMIT_EXCEEDED with retry_after_ms and a Retry-After header. The map of
// buckets is bounded: when full, buckets that have refilled completely
// (indistinguishable from new ones) are dropped first.
package ratelimit
