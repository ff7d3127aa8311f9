// Package discord is Matrix OS's built-in Discord bridge: a bridgev2
// network connector run in-process by internal/bridges/host.
//
// A Matrix user logs in by sending the bridge bot `login bot-token` and then
// a Discord bot token. The bot relays: each text channel of the guilds it is
// in, and each DM it has, is a portal room; Discord users are ghosts
// (@discord_<user id>:server). Where the user chooses it, `login user-token`
// logs in with their own account's token (against Discord's terms, at their
// own risk): their DMs, group DMs (from READY's private_channels) and guild
// channels are portals of that login, their Matrix messages are sent as
// them, and their own messages typed on Discord are bridged while the
// echoes of those sent from Matrix are not (ownSends). Messages go both ways with Discord markdown
// converted to and from Matrix HTML (markdown.go, tomarkdown.go), with
// edits, deletions, replies, reactions (unicode emoji; custom emoji arrive
// as :name: text), attachments and threads (a Discord thread opened on a
// message is the Matrix thread of that message's event).
//
// The connector talks to Discord through github.com/bwmarrin/discordgo,
// whose rate limiter follows Discord's per-route buckets and waits out
// 429 answers. discordgo keeps Discord's URLs in package-level variables:
// the network config's api_url and cdn_url (used by the tests to point at
// discordfake) therefore apply to the whole process, and only one Discord
// bridge runs per process.
//
// The bot login relays (relay.go): it is the bridgev2 relay of its guild
// channel portals, so Matrix users who have not logged in write there too,
// through a webhook of the channel under their own name and avatar (or,
// without the Manage Webhooks permission, through the bot as
// "**Name**: text").
//
// Nothing is lost across a restart: a dropped gateway connection RESUMEs
// its session and Discord replays what it missed; a new session (after a
// restart of the bridge) fetches each bridged channel's and thread's
// messages after the last one bridged (catch_up_limit), and bridgev2 drops
// any it already has.
package discord
