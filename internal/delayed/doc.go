// Package delayed implements delayed events (MSC4140, under its unstable
// prefix org.matrix.msc4140), which Element Call uses to leave a call when
// its client disappears: a client sends an event or a state event with the
// query parameter org.matrix.msc4140.delay=<ms> and gets a delay_id back
// instead of an event; the node sends the event itself once the delay has
// passed, unless the client restarted the timer (a heartbeat), cancelled it
// or had it sent at once before then.
//
// Scheduled events are stored (table delayed_events) and kept in memory; a
// node that stops keeps them, and sends those that fell due meanwhile as
// soon as it starts again. The delay_id is a random secret: the cancel,
// restart and send actions at
// /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/{action}
// need no access token (a client that lost its session can still leave its
// call), while the older POST .../delayed_events/{delay_id} with an action
// in the body and the GET listing the user's scheduled events need one.
//
// A delayed state event is cancelled when another user changes the same
// state (room, type and state key), so that a stale "leave" cannot overwrite
// what someone else set; the user's own changes keep it. A delay longer than
// the node's max_event_delay is refused (400, org.matrix.msc4140.errcode
// M_MAX_DELAY_EXCEEDED with org.matrix.msc4140.max_delay), and so is an
// event past MaxPerUser (100) scheduled by one user (429 M_LIMIT_EXCEEDED,
// until one of theirs is sent or cancelled). The events are
// sent through the room engine as the user and device that scheduled them,
// so the auth rules apply when they are sent; one that is no longer allowed
// then is logged and dropped. A scheduled row is deleted only after its
// send, which carries a transaction ID derived from the delay ID: a send
// that failed, or whose outcome a crash lost, is made again, and the room
// engine answers a repeat with the event already sent (at least once,
// never twice).
package delayed
