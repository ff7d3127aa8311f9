package node

import (
	"context"
	"path/filepath"

	"github.com/matrixos/matrixos/internal/appservice"
)

// wireAppserviceQueue makes the delivery queue of the registry's
// appservices and feeds it every event, in the write that stores it.
func (n *Node) wireAppserviceQueue(registry *appservice.Registry) {
	q := appservice.NewQueue(n.DB, n.log, registry, n.Rooms)
	n.AppserviceQueue = q
	n.Rooms.OnPersist = append(n.Rooms.OnPersist, q.QueueEvent)
}

// loadAppserviceRegistry loads the registration files of
// <data>/appservices; a refused file is logged and the others load.
func (n *Node) loadAppserviceRegistry() *appservice.Registry {
	g := appservice.NewRegistry(n.cfg.ServerName)
	if err := g.Reload(filepath.Join(n.cfg.DataDir, "appservices")); err != nil {
		n.log.Warn("appservice registrations refused", "err", err)
	}
	return g
}

// startAppserviceQueue starts delivering what is queued for appservices.
func (n *Node) startAppserviceQueue() error {
	return n.AppserviceQueue.Start(context.Background())
}
