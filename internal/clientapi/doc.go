// Package clientapi owns the Client-Server endpoints for rooms and events:
// room creation, membership, sending and reading events and state,
// pagination, redaction, aliases and the room directory. It turns requests
// into rooms.Engine calls and engine events into the client format.
//
// With federation on (UseFederation), aliases of other servers resolve by
// asking them (ResolveAlias, which joins by alias use too) and
// /publicRooms?server= lists another server's directory; FederationRoutes
// serves this server's aliases and directory to others
// (query/directory, publicRooms).
package clientapi
