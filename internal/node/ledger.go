package node

import (
	"context"
	"crypto/ed25519"
	"path/filepath"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
)

// LedgerDir is the events log's directory in the data directory.
func LedgerDir(cfg config.Config) string {
	return filepath.Join(cfg.DataDir, "ledger", "events")
}

// openLedger opens the events log, signed with the node's key, and has it
// follow the room engine's committed events.
func (n *Node) openLedger(ctx context.Context, key ed25519.PrivateKey) error {
	l, err := ledger.Open(ctx, n.DB, n.log, ledger.Options{
		Dir:    LedgerDir(n.cfg),
		Origin: ledger.EventsOrigin(n.cfg.ServerName),
		Key:    key,
		All:    n.cfg.Ledger == "all",
	})
	if err != nil {
		return err
	}
	n.Ledger = l
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, l.OnEvent)
	l.Start()
	return nil
}
