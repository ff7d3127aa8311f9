// Package ledger keeps the node's transparency log: an append-only Merkle
// tree (C2SP tlog-tiles, stored by Tessera's POSIX driver under
// <data>/ledger/events) of the events accepted in the rooms that have the
// ledger on, with checkpoints signed by the ledger's ed25519 key (derived
// from the node's signing key, see DeriveKey) as C2SP tlog-checkpoint
// signed notes, and the proofs that let anyone check,
// offline, that an event is in the log.
//
// An entry is the JSON object {"content_hash","event_id","room_id"} of one
// event: its room, its event ID and the content hash of its PDU (hashes.
// sha256), never the content, so a redaction or an erasure still leaves
// the log able to prove what was there.
//
// A room has the ledger on while its state event org.matrixos.ledger (state
// key "") says {"enabled": true}; the room's power levels decide who may
// set it. With the setting ledger: all every room is logged. The event that
// turns the ledger on or off is itself logged. What counts is the room's
// resolved state, as the rooms engine reports its changes (Options.States):
// a toggle on a fork that lost the state resolution turns nothing on or
// off, and a resolution that drops or replaces the room's toggle does.
//
// The log follows the committed events (rooms.Engine.CommittedEvents): an
// OnEvent hook only wakes the Log's follower (internal/follower), which
// reads the committed events after its mark (the stream
// position up to which it has appended, stored in ledger_marks with the
// log's size) up to the next position where a room's ledger turns on or
// off, appends those of ledger rooms to Tessera in batches, waits
// until they are integrated and then records, in one transaction, where
// each event landed (ledger_entries), the rooms it saw turn the ledger on
// or off (ledger_rooms) and the new mark. Nothing runs on the send path
// but a non-blocking wake-up, and a crash loses nothing: on start the
// follower reads again from the mark, and the entries Tessera integrated
// after it (a crash between the append and the mark) are recognised and
// not appended twice. Backfilled history (negative positions) is not
// logged: this node did not accept it as it happened, so its place in the
// log would claim an order it does not have; a proof request for it is
// ErrBackfilled.
//
// Serve publishes the log read-only as C2SP tlog-tiles under
// /_matrixos/ledger/v1/events/ (checkpoint, tile/...), with the log's
// public note key at .../key; ProofRoute answers a room member's request
// for an event's proof bundle, which Verify checks offline. Prover.Export
// bundles a room's logged events with their proofs against one checkpoint
// (a compliance export), which VerifyExport checks offline.
//
// Witness makes the node a witness of other servers' logs (C2SP
// tlog-witness over the federation listener, X-Matrix authenticated): it
// cosigns (C2SP tlog-cosignature) a checkpoint only when it is consistent
// with the last one it cosigned for that log, which it keeps in the
// database, and raises an Alert on a fork. StartCosigning has the node's
// own checkpoints cosigned by the servers it shares ledger rooms with and
// publishes the cosigned checkpoint, which proof bundles carry and
// VerifyWitnessed checks.
//
// KeysLog is a second log, of identity keys: each change of a local user's
// device keys or cross-signing keys (see its documentation). The node
// keeps it only when the ledger_keys setting is on, as its public tiles
// list every local E2EE user and device.
package ledger
