// Package stateres owns state resolution for room versions 2 to 12: the
// algorithm that merges several conflicting views of a room's state (the
// states after the prev_events of an event, or the states of two sides of a
// netsplit) into one.
//
// Room versions 2 to 11 use state resolution v2 and room version 12 uses
// v2.1 (MSC4297), which differs in two places: the first iterative auth
// checks start from an empty state map instead of the unconflicted state
// map, and the full conflicted set also holds the conflicted state
// subgraph, the events on an auth_events path from one conflicted event to
// another.
//
// The package is pure logic. It reads events through an [EventLoader] and
// asks the auth DAG questions (auth chains, the auth difference, the
// conflicted state subgraph) through an [AuthIndex]: the default
// [WalkIndex] walks auth_events through the loader on every resolution, an
// [AuthGraph] (which the room engine keeps per room) remembers every
// event's auth_events as small numbers and walks them without loading
// anything twice; it can start from the edges of a persistent index
// ([AuthGraph.Add]) and tells what it had to load ([AuthGraph.TakeLoaded]). Authorisation is mautrix federation/eventauth's
// Authorize with precomputed auth events. Only the conflicted part of the
// state is resolved, and the power-level mainline is computed once per
// resolution.
//
// It does not store anything, fetch missing events over federation, or know
// about the room engine; the engine calls [Resolver.Resolve] with the states
// to merge and gets back the resolved state map.
package stateres
