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
// Before each event's write is queued, on the sender's goroutine,
// [Service.OnAccept] evaluates the rules of every local joined member but
// the sender against the room's state after the event (the members whose
// rules are the predefined ones, unchanged, share one walk of them and
// have only the conditions that name them matched each: see shared.go).
// What that needs of the members (who is local and joined, their rules,
// whom they ignore, their display names) is kept per room and made again
// only when the room's members, anyone's rules or anyone's ignored users
// change (see roster.go);
// inside the event's write transaction it records the outcome as one row
// (the users notified, by their numbers in the room, with their actions:
// see slots.go), so the counts commit with the event. Read receipts
// ([Service.MarkRead]) and the user's own events move read marks, which
// clear them. Counts are also kept in memory, updated after the commit;
// [Service.CountsSource] reports them in /sync, and
// [Service.Notifications] lists a user's notifications for
// /notifications.
//
// Rule conditions are evaluated with maunium.net/go/mautrix/pushrules,
// except event_match and content-rule patterns, which are matched here with
// the spec's semantics (whole-value, case-insensitive globs; word boundaries
// for content.body), and MSC4306's thread_subscription, which asks
// [Service.ThreadSubscribed].
package push
