package node_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestServerNameBoundOnceUsersExist: a database with users refuses another
// server name (it used to start and lock every user out), also when the
// name was never stored (a database from before the check); without users
// the name may change.
func TestServerNameBoundOnceUsersExist(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		cfg := n.Config
		n.Stop()
		openWith := func(c config.Config, serverName string) error {
			c.ServerName = serverName
			db, err := node.OpenDB(ctx, c, node.NewLogger(c, io.Discard))
			if err == nil {
				db.Close()
			}
			return err
		}
		open := func(serverName string) error { return openWith(cfg, serverName) }
		// No users yet (a database no node has run on: a node creates its
		// own users, such as @moderation, at start): the name follows the
		// config.
		fresh := cfg
		fresh.DataDir = t.TempDir()
		if cfg.Database != "" {
			fresh.Database = pgtest.Start(t)
		}
		if err := openWith(fresh, "renamed.example"); err != nil {
			t.Fatalf("renaming a node without users: %v", err)
		}
		if err := openWith(fresh, cfg.ServerName); err != nil {
			t.Fatalf("renaming back: %v", err)
		}
		n = testnode.StartConfig(t, cfg)
		alice := n.Register("alice")
		n.Stop()
		err := open("other.example")
		if err == nil || !strings.Contains(err.Error(), "locked out") || !strings.Contains(err.Error(), string(alice.UserID)) {
			t.Fatalf("another server name with users: %v", err)
		}
		// A database from before the name was stored is bound to its users'.
		db, err := node.OpenDB(ctx, cfg, node.NewLogger(cfg, io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM node_settings`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if err := open("other.example"); err == nil {
			t.Fatal("an unstored server name was changed with users present")
		}
		n = testnode.StartConfig(t, cfg)
		if _, err := n.Login(alice.UserID).Whoami(ctx); err != nil {
			t.Fatalf("alice after restart: %v", err)
		}
	})
}
