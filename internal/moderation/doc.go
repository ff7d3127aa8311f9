// Package moderation keeps spam and abuse out of the node's rooms
// (docs/moderation.md): policy lists, per-room protections, a spam
// classifier that learns from the node's moderators, and users' reports
// sent on to a moderators' room.
//
// Everything runs off the send path. The room engine's OnEvent hook only
// wakes a follower that, like the ledger's and the contracts', reads the
// committed events after its mark, those of the rooms it watches
// (protected rooms, their policy lists and moderators' rooms) and every
// configuration event, and acts as the moderation user
// (@moderation:<server>) with ordinary events: bans, unbans, redactions,
// kicks, power levels and server ACLs. The node creates the moderation
// user at start (EnsureBot). Each action needs the power level any
// moderator would; one the moderation user lacks the power for is
// refused, logged and told to the moderators' room, except a flood's
// mute, which falls back to redacting the flooder's messages and
// kicking them. Every action is
// logged (moderation_actions, the admin API) and reported to the
// moderators' room, where a reaction with UndoKey (↩️) to the report, by
// a user who may ban in the room acted in, undoes it.
//
// A room turns protections on with the state event
// org.matrixos.protections (Config; a local send with a bad one is
// refused with M_BAD_JSON through rooms.Engine.StateChecks): flood,
// mention, word and link limits, limits on new accounts and first
// messages, the classifier, and the policy lists it follows. Policy
// lists are rooms of m.policy.rule.user/.room/.server events (and the
// older types Mjolnir wrote): user rules ban matching members of every
// protected room that follows the list, at once and when they join;
// server rules become the room's m.room.server_acl deny entries; room
// rules of any list the node or a protected room follows keep the node
// out of the rooms they match (RoomPolicy, the room engine's one hook
// for every way into a room: local users are taken out, and joins,
// invites and knocks through the node are refused, the room hidden from
// its directory). Removing a rule (emptying or redacting it) lifts a
// room rule's block at once, and a user rule's bans and a server rule's
// ACL entries when the room asks (unban_on_rule_removal). The node publishes its own
// list (the admin API), which every protected room follows.
//
// The classifier is a multinomial naive Bayes model over a message's
// words, link hosts and mentions, one per node, kept in memory and saved
// every 30 seconds. It learns only in rooms whose protections a server
// admin of this node set: their messages are learnt as ham as they
// arrive; one a moderator of this node redacts, or whose sender such a
// moderator bans, is learnt as spam instead. Other rooms with the
// classifier on use it without teaching it, so no local user's room and
// no remote room can poison it. Once it has learnt enough
// spam, a new message it finds likely spam is redacted and reported, and
// undoing the report sends the message again and learns it as ham.
// In encrypted rooms the server sees no plaintext: only the flood and
// new-account limits apply.
package moderation
