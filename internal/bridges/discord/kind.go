package discord

import (
	"maunium.net/go/mautrix/bridgev2"

	"github.com/matrixos/matrixos/internal/bridges"
)

// Kind is the Discord bridge as the bridge manager lists and runs it.
func Kind() bridges.Kind {
	return bridges.Kind{
		Name:        "discord",
		Description: "Discord: a bot relays guild channels and its DMs (log in with a bot token), or your own account's DMs and channels (a user token, at your own risk)",
		NewNetwork:  func() bridgev2.NetworkConnector { return NewConnector() },
	}
}
