// Package clientapi owns the Client-Server endpoints for rooms and events:
// room creation, membership, sending and reading events and state,
// pagination, redaction, aliases and the room directory. It turns requests
// into rooms.Engine calls and engine events into the client format.
package clientapi
