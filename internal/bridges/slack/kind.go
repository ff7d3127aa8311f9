package slack

import (
	"maunium.net/go/mautrix/bridgev2"

	"github.com/matrixos/matrixos/internal/bridges"
)

// Kind is the Slack bridge for the bridge manager (`matrixos bridge enable
// slack`).
func Kind() bridges.Kind {
	return bridges.Kind{
		Name:        "slack",
		Description: "Slack workspaces through a Slack app (bot and app-level tokens, Socket Mode)",
		NewNetwork:  func() bridgev2.NetworkConnector { return NewConnector() },
	}
}
