// Package peek serves the Client-Server room preview ("peeking")
// endpoints: GET /_matrix/client/v3/rooms/{roomId}/initialSync, a snapshot
// of a room's state and latest messages, and GET /_matrix/client/v3/events
// with room_id, a long-poll for a room's new events. Both work for rooms
// the user is joined to and for world-readable rooms; a user who left sees
// the room as it was when they left (initialSync only). Events are shown
// under the room's history visibility rules.
package peek
