package node

import (
	"context"
	"time"

	"github.com/matrixos/matrixos/internal/automation"
	"github.com/matrixos/matrixos/internal/netguard"
)

// automationWebhookTimeout bounds an outgoing webhook call of a rule.
const automationWebhookTimeout = 10 * time.Second

// startAutomation builds the automation service, with outgoing webhooks
// through netguard (allow_private_networks applies), and starts it.
func (n *Node) startAutomation(ctx context.Context) error {
	guard, err := netguard.New(n.cfg.AllowPrivateNetworks)
	if err != nil {
		return err
	}
	n.Automation, err = automation.New(ctx, automation.Options{DB: n.DB, Rooms: n.Rooms, Accounts: n.Accounts,
		Tags: n.AccountData, HTTP: guard.Client(netguard.ClientOptions{Timeout: automationWebhookTimeout}), Log: n.log})
	if err != nil {
		return err
	}
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, n.Automation.OnEvent)
	n.Rooms.OnPurge = append(n.Rooms.OnPurge, n.Automation.PurgeRoom)
	n.Automation.Start()
	return nil
}
