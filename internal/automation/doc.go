// Package automation runs the rules room admins write (docs/automation.md):
// a trigger (a message matching a pattern, a join, a reaction, a daily
// schedule, an incoming webhook at a secret URL), conditions (sender,
// weekday, hours) and actions (send a message, invite, tag the room for
// a member, forward the message, call an outgoing webhook, send the
// input event of a contract).
//
// A rule is the state event org.matrixos.automation.rule (the state key
// names it), so the room's power levels decide who may write one, or is
// set by a server admin at /_matrixos/admin/v1/automation. A follower
// reads the committed events after its mark, off the send path, as the
// contracts' does; the actions run as the automation user
// (@automation:<server>), an ordinary member of the room subject to its
// auth rules, which joins a room when it gets a rule. Its own events
// trigger nothing, and notices (m.notice) trigger no message rule, so
// rules cannot loop; each room's runs and each webhook's calls are
// rate-limited. Outgoing webhooks go through netguard, which refuses
// private and loopback addresses unless allow_private_networks names
// them.
package automation
