// Package analytics keeps per-room activity figures built from event
// metadata only (room, sender, type, origin_server_ts), so it works for
// encrypted rooms without reading any content, and answers them for a
// room or the whole node: messages per hour over a window, the busiest
// hours (weekday × hour of day, UTC), the median time to a reply by
// another user, the active members, and a short-term forecast of
// activity from a seasonal model fitted to the room's own hourly history
// (Holt-Winters, additive, with a daily season).
//
// The figures are incremental aggregates: a follower reads the committed
// events after its mark in stream order, as the ledger and the contracts
// do, and adds them to hourly and daily bucket tables in the same
// transaction that moves its mark. The follower runs every 30 seconds,
// or sooner after a burst of messages, not after each send; a report
// (endpoint or command) first counts what was committed before it, then
// reads buckets only (at most one row per hour of the window), never the
// events.
//
// Served at GET /_matrixos/admin/v1/analytics (the node) and
// /_matrixos/admin/v1/analytics/rooms/{roomId} (a room), with a chart
// rendered as PNG with the standard library at .../chart.png, and as
// Prometheus gauges for the node (Collectors).
package analytics
