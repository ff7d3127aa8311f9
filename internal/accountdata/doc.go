// Package accountdata owns users' account data: global and per-room
// key/value JSON objects (PUT/GET /user/{userId}/account_data/{type} and
// /user/{userId}/rooms/{roomId}/account_data/{type}), room tags (the m.tag
// room account data, edited through /user/{userId}/rooms/{roomId}/tags),
// and the sync source that delivers changed account data to clients.
//
// Deleting account data follows MSC3391: DELETE on both paths under
// /_matrix/client/unstable/org.matrix.msc3391, or PUT of an empty object,
// leaves the type with content {}. GET then answers 404, an incremental
// /sync delivers the type with that empty content so clients drop it, and
// an initial /sync leaves it out.
//
// It also reads two types other packages act on: m.ignored_user_list
// (IgnoredUsers, for sync) and the invite permission config (InviteAction:
// the spec's m.invite_permission_config and MSC4155's unstable
// org.matrix.msc4155.invite_permission_config), which clientapi asks
// before an invite and sync before showing one.
//
// Only the latest value of each (user, room, type) is kept. Every change
// takes a node stream position in the same write, so /sync reports what
// changed after a token.
package accountdata
