// Package push owns push rules and unread notification counts (the
// Client-Server "Push notifications" module).
//
// Each user's rules are the spec's predefined (server-default) rules (with
// MSC3930's poll rules and MSC4306's thread subscription rules in their
// postcontent kind, which takes no client rules), with
// the user's changes to their enabled flags and actions, plus the user's own
// rules. The /pushrules endpoints read and change them, and every change is
// reported to the user's clients as an m.push_rules account-data event in
// /sync (see [Service.RulesSource]).
//
// Inside each event's write transaction, [Service.OnPersist] evaluates the
// rules of every local joined member but the sender and records, per room
// and per thread, the events that notify or highlight, so they commit with
// the event. Read receipts ([Service.MarkRead]) and the user's own events
// clear them. Counts are also kept in memory, updated after the commit;
// [Service.CountsSource] reports them in /sync.
//
// Rule conditions are evaluated with maunium.net/go/mautrix/pushrules,
// except event_match and content-rule patterns, which are matched here with
// the spec's semantics (whole-value, case-insensitive globs; word boundaries
// for content.body), and MSC4306's thread_subscription, which asks
// [Service.ThreadSubscribed].
package push
