// Package contracts runs deterministic WebAssembly contracts attached to
// rooms (docs/contracts.md): it owns the runtime (wazero), the gas
// instrumenter, the uploaded modules, each contract's state and the
// follower that feeds a room's events to its contracts and sends their
// results, and Replay, which checks a contract's results from the ledger.
//
// Runtime: a module may import only the host functions of the module
// "matrixos" (input_get, state_get, state_set, state_del, result_str,
// result_int) and must export memory and handle: () -> i32. Nothing else
// is offered: no WASI, so no clock, randomness, files or network. Each
// call runs in a fresh instance with a memory limit (MemoryPages), a gas
// budget and a wall-clock deadline as a backstop (wazero closes the
// instance when its context ends). wazero meters nothing itself, so
// Instrument rewrites the module at upload: it adds an exported mutable
// i64 global and, at the start of every function body, block, loop, if
// and else, subtracts the number of instructions directly inside it and
// traps once the counter is negative. Host calls cost gas too. A module
// that names the added global, has a start function or uses instructions
// outside the accepted sets is refused.
//
// Rooms: a contract is attached with the state event org.matrixos.contract
// (the state key names the attachment) whose content names the module's
// SHA-256 (uploaded with PUT /_matrixos/admin/v1/contracts), the event
// types it runs on and an optional config object. The follower reads the
// committed events after its mark in stream order, like the ledger's, and
// for each event of a declared type calls the contract with the event
// (event_id, type, sender, state_key, origin_server_ts, content) and the
// attachment's config; the state writes and the new mark commit together,
// and the result is sent as org.matrixos.contract.result by the contracts
// user, naming the attachment, the module hash and the input event. The
// state belongs to (room, attachment, module): attaching another module
// starts from empty state.
//
// Replay: with the ledger on in the room before the contract is attached,
// the log holds every attachment, input and result in the order the
// follower saw them, so Replay reruns the contract from the logged
// inputs and compares each result with the logged one.
package contracts
