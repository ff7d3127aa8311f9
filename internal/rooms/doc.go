// Package rooms owns the room event graph: building, hashing, signing and
// authorising PDUs of every supported room version, the serialised per-room
// pipeline that appends events, the state of a room at any event (stored as
// snapshots with deltas), redaction, and the in-memory view of current state
// and memberships that the hot paths read.
package rooms
