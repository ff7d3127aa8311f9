// Package rooms owns the room event graph: building, hashing, signing and
// authorising PDUs of every supported room version, the serialised per-room
// pipeline that appends events, the state of a room at any event (stored as
// snapshots with deltas), redaction, and the in-memory view of current state
// and memberships that the hot paths read.
//
// A room is a DAG with several forward extremities. Local events (Send)
// and remote ones (ReceivePDU, ReceivePDUs for the PDUs of one room in a
// transaction, and the membership endpoints' calls:
// MembershipTemplate, ReceiveMembership, ImportJoin, ReceiveInvite) pass
// through the same pipeline, where the auth rules apply; state before an
// event with several prev_events, and the current state over several
// extremities, come from internal/stateres. What the engine needs from
// other servers comes through the Remote interface (node wires an adapter
// over the federation client); the package never imports federation. An
// event another server countersigns first (an invite of its user) is
// proposed (Propose: built and authorised, nothing changes) and appended
// as that server returns it (AppendCountersigned).
// Outliers, rejected and soft-failed events live beside the timeline
// (outlier_events), so readers of the events table see only the accepted
// timeline. History this node lacks is fetched from other servers when a
// page of /messages reaches it (HistoryBefore) and stored in the timeline
// at negative positions, without state; pages run in topological order,
// (depth, position) (TopoEvents), while /sync follows positions. A room
// joined with partial state (ImportCheckedPartialJoin: send_join's
// members_omitted) is usable at once and completed in the background
// from the servers the answer named (partial.go). The state of a
// send_join answer (CheckJoinState) and of a resync's /state answer is
// checked as a stream, a batch at a time (statestream.go).
package rooms
