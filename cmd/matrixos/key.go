package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
)

// key runs "matrixos key rotate": a new signing key, the old one kept as
// an old verify key.
func key(args []string) error {
	if len(args) == 0 || args[0] != "rotate" {
		return errors.New("usage: matrixos key rotate [--data DIR]")
	}
	flags, _, err := parseFlags("key rotate", args[1:], 0, nil)
	if err != nil {
		return err
	}
	cfg, _, err := config.Load(flags, false)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, node.SigningKeyFile)); err != nil {
		return fmt.Errorf("no signing key to rotate in %s (pass --data DIR where \"matrixos serve\" keeps its data): %w", cfg.DataDir, err)
	}
	if err := requireData(cfg); err != nil {
		return err
	}
	oldID, newID, err := node.RotateKey(context.Background(), cfg, node.NewLogger(cfg, io.Discard))
	if err != nil {
		return err
	}
	fmt.Printf("New signing key %s; %s is now an old verify key, still served to other servers.\nRestart the node to sign with the new key.\n", newID, oldID)
	return nil
}
