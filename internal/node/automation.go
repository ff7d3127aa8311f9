package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/matrixos/matrixos/internal/automation"
	"github.com/matrixos/matrixos/internal/netguard"
)

// automationWebhookTimeout bounds an outgoing webhook call of a rule.
const automationWebhookTimeout = 10 * time.Second

// newAutomation builds the automation service, with outgoing webhooks
// through netguard (allow_private_networks applies); startFollowers
// starts it.
func (n *Node) newAutomation(ctx context.Context) error {
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
	return nil
}

// registerCommands adds the analytics and automation commands to the
// assistant ("!assistant stats", "forecast", "rule").
func (n *Node) registerCommands() error {
	for _, c := range slices.Concat(n.Analytics.Commands(), n.Automation.Commands()) {
		if err := n.Assistant.Register(c); err != nil {
			return fmt.Errorf("assistant command %s: %w", c.Name(), err)
		}
	}
	return nil
}
