// Package federation owns this node's part of the Server-Server API that
// everything else in federation rests on: identity, keys, discovery,
// transport, transactions in both directions and the room endpoints.
//
//   - The federation listener's endpoints: GET /_matrix/federation/v1/version,
//     the key server GET /_matrix/key/v2/server (this node's verify keys,
//     old_verify_keys and valid_until_ts, self-signed), the notary
//     GET and POST /_matrix/key/v2/query (other servers' keys, answered from
//     the key cache or fetched directly, with the notary's signature added),
//     and /.well-known/matrix/server.
//   - The KeyRing: another server's verify key valid at a given time (the
//     room version 5+ rule: a key counts until its valid_until_ts, an old
//     key until its expired_ts), fetched through the configured notaries
//     (trusted_key_servers) or directly, checked (the response names the
//     server asked and carries a self-signature by every key it lists; a
//     notary's answer carries the notary's signature too) and kept in the
//     federation_server_keys table.
//   - Outbound requests: a mautrix federation.Client whose transport
//     resolves server names as the spec says (IP literals, explicit ports,
//     .well-known, SRV _matrix-fed._tcp then _matrix._tcp, port 8448), tries
//     every resolved target in turn, dials only what internal/netguard
//     allows (loopback and private ranges need allow_private_networks),
//     trusts the extra CA of federation_ca, and bounds timeouts, response
//     sizes and connections per host. Requests are signed with X-Matrix.
//   - Inbound X-Matrix authentication (Authenticate): the origin's key is
//     looked up in the KeyRing and the request's signature checked; a
//     request without a valid signature gets 401 M_UNAUTHORIZED.
//   - This node's old verify keys (federation_old_keys), recorded by
//     matrixos key rotate and served as old_verify_keys.
//   - The outbound queue (Outbox): PDUs and EDUs for other servers, kept in
//     the database until delivered, one transaction in flight per
//     destination, batched, retried with a capped exponential backoff and
//     woken when the destination contacts us; per-destination metrics.
//   - Inbound transactions (PUT /send): limits, idempotency per origin and
//     transaction ID, each room's PDUs handed in order, in one call, to
//     the room engine (SetPDUReceiver, RoomPDUReceiver), EDUs to the handlers other packages register with
//     HandleEDU.
//   - The room endpoints (ServeRooms): make_*/send_* for joins, leaves and
//     knocks, invite, event, state, state_ids, event_auth, backfill,
//     get_missing_events and timestamp_to_event on the resident server,
//     and the joining side (JoinRemote, LeaveRemote, KnockRemote,
//     SendInvite) that the client API calls; server ACLs (ServerAllowed)
//     over all of them.
//
// The event graph itself is the room engine's (internal/rooms): the
// checks on receipt, state, auth chains and history visibility are asked
// of it. docs/federation.md lists the Server-Server endpoints this node
// serves.
package federation
