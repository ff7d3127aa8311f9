// Package admin is the server administration side of the node:
//
//   - content reports (POST /rooms/{roomId}/report[/{eventId}],
//     /users/{userId}/report), which admins read back;
//   - server notices: a room per user where a system user
//     (@server:<server_name>) posts m.server_notice messages;
//   - the spec's admin endpoints (/admin/whois, suspend, lock) and the
//     Synapse-compatible /_synapse/admin API that admin tools and
//     moderation bots speak (users, rooms, media, event reports,
//     registration tokens, server version);
//   - Guard, a middleware that applies account suspension, shadow bans and
//     blocked rooms to the client API without touching its handlers.
//
// Every admin endpoint checks that the caller is a server admin before it
// looks anything up, and logs the call.
package admin
