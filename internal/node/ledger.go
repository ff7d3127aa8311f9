package node

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
)

// LedgerDir is the events log's directory in the data directory.
func LedgerDir(cfg config.Config) string {
	return filepath.Join(cfg.DataDir, "ledger", "events")
}

// LedgerKeysDir is the identity keys log's directory in the data
// directory.
func LedgerKeysDir(cfg config.Config) string {
	return filepath.Join(cfg.DataDir, "ledger", "keys")
}

// openLedger opens the events log, signed with the ledger's key (derived
// from the node's, see ledger.DeriveKey), which follows the room engine's
// committed events, and, when ledger_keys is on, the identity keys log,
// which follows the device list changes. startFollowers starts both.
func (n *Node) openLedger(ctx context.Context, nodeKey ed25519.PrivateKey) error {
	key, err := ledger.DeriveKey(nodeKey)
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, n.DB, n.log, ledger.Options{
		Dir:    LedgerDir(n.cfg),
		Origin: ledger.EventsOrigin(n.cfg.ServerName),
		Key:    key,
		All:    n.cfg.Ledger == "all",
		States: n.Rooms,
		Public: n.cfg.LedgerPublic,
	})
	if err != nil {
		return err
	}
	n.Ledger = l
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, l.OnEvent)
	if !n.cfg.LedgerKeys {
		return nil
	}
	keys, err := ledger.OpenKeys(ctx, n.DB, n.log, LedgerKeysDir(n.cfg), n.cfg.ServerName, key)
	if err != nil {
		return fmt.Errorf("open the identity keys log: %w", err)
	}
	n.LedgerKeys = keys
	return nil
}
