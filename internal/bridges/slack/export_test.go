package slack

import "github.com/slack-go/slack/socketmode"

// SetSocketEventHook makes hook see every Socket Mode event before the
// bridge handles it, until the returned function is called.
func SetSocketEventHook(hook func(evt socketmode.Event)) (restore func()) {
	socketEventHook.Store(&hook)
	return func() { socketEventHook.Store(nil) }
}
