// Package slack is the built-in Slack bridge: a bridgev2 network connector
// (maunium.net/go/mautrix/bridgev2) on github.com/slack-go/slack, run in
// process by internal/bridges/host.
//
// A Matrix user logs in from a DM with the bridge bot with a Slack app's bot
// token (xoxb-) and app-level token (xapp-, Socket Mode). The channels and
// DMs the app's bot user is a member of become portal rooms; Slack users
// become ghosts (name and avatar). Messages go both ways with mrkdwn <->
// Matrix HTML, with edits, deletes, threads, reactions and files; messages
// from Matrix are posted by the app's bot user under the Matrix user's name.
//
// Events come over Socket Mode and an envelope is acknowledged only once
// the Matrix side has accepted its event (the message is in bridgev2's
// database), so Slack delivers it again after a crash or restart; bridgev2's
// message mapping makes that redelivery a no-op when the event did land.
// Slack retries only for a while, so on connecting the bridge also fetches
// each bridged channel's messages posted after the last one it bridged.
// Calls to the Web API wait for a per-method (and, for chat.postMessage,
// per-channel) rate limiter set to Slack's tiers and are retried after
// Slack's Retry-After when Slack answers "ratelimited".
//
// The network config section has api_url (empty means https://slack.com/api/;
// the tests point it at slackfake).
package slack
