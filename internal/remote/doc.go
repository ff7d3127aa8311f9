// Package remote holds what the packages that ask other servers for data
// on a client's behalf share: Error, which turns a failed federation
// request into the answer the client gets (the remote's 403 or 404 passed
// on, 502 when the server cannot be reached or answers nonsense, 504 when
// it is too slow), and Cache, a short-lived cache whose concurrent misses
// for one key share one fetch.
//
// The outbound requests themselves go through the mautrix federation
// client that node hands each consumer behind a small interface of its
// own; this package never imports internal/federation.
package remote
