// Package discordfake is a fake Discord for tests: one loopback HTTP server
// that speaks Discord's REST API (v9 and v10 paths) and its gateway websocket
// protocol, so a real client library (discordgo) talks to it unchanged.
//
// The REST side covers what a bridge needs: users/@me, gateway/bot, guilds
// and their channels, channel messages (list with after/before, create as
// JSON or multipart with attachments, edit, delete, replies through
// message_reference), reactions, typing, threads started from a message, DM
// channels, channel webhooks (list and create, which need the Manage
// Webhooks permission; execute, and edit and delete their messages, with the
// webhook's token in the path), a user's read state (ack), and the
// attachments themselves under a CDN-like path. Every answer carries the
// X-RateLimit-* headers of its bucket; a bucket that is used up answers 429
// with retry_after, as Discord does.
//
// Requests authenticate as the bot ("Bot <token>") or as a user with their
// own token (users.go): a user sees every guild and the DMs and group DMs
// they are in.
//
// The gateway side sends HELLO, answers IDENTIFY with READY (with a user's
// private channels) and one GUILD_CREATE per guild, acknowledges
// heartbeats, dispatches MESSAGE_CREATE/UPDATE/DELETE,
// MESSAGE_REACTION_ADD/REMOVE, TYPING_START, MESSAGE_ACK and THREAD_CREATE
// with sequence numbers, and replays what a session missed when it RESUMEs
// after a dropped connection.
//
// Tests act as Discord users through the Server's methods (Post, Edit,
// Delete, React, StartThread, Type, ...) and read what a client did through
// Messages, WaitMessage, WaitTyping, WaitAck and Attachment.
package discordfake
