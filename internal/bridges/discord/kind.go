package discord

import (
	"maunium.net/go/mautrix/bridgev2"

	"github.com/matrixos/matrixos/internal/bridges"
)

// Kind is the Discord bridge as the bridge manager lists and runs it.
func Kind() bridges.Kind {
	return bridges.Kind{
		Name:        "discord",
		Description: "Discord: a bot relays guild channels and its DMs (log in with a bot token)",
		NewNetwork:  func() bridgev2.NetworkConnector { return NewConnector() },
	}
}
