// Package spaces serves room previews: the space hierarchy
// (GET /_matrix/client/v1/rooms/{roomId}/hierarchy), which walks the
// m.space.child state of local rooms depth first, and the room summary
// (GET /_matrix/client/v1/room_summary/{roomIdOrAlias}).
//
// Both answer only for rooms the caller may preview: rooms they are joined
// to, invited to or knocking on, rooms whose join rule lets them join or
// knock (public, knock, knock_restricted, or restricted when they are in an
// allowed room), and world-readable rooms. A banned user may preview
// nothing. With federation on, the hierarchy walks into rooms this server
// does not know, and the summary describes them, by asking other servers
// (see remote.go); without it, they are left out.
//
// Other servers get GET /_matrix/federation/v1/hierarchy/{roomId}: a space
// and the summaries of its children, by the same rules applied to the
// asking server's users (see serverMayPreview).
package spaces
