package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
)

// appserviceCmd is `matrixos appservice list|reload`: list checks the
// registration files of <data>/appservices as the node loads them; reload
// checks them too, then asks the running node to load them again (a
// storage change it picks up at once, or when it next starts).
func appserviceCmd(args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "reload") {
		return errors.New("usage: matrixos appservice list|reload")
	}
	sub, args := args[0], args[1:]
	flags, _, err := parseFlags("appservice "+sub, args, 0, nil)
	if err != nil {
		return err
	}
	cfg, _, err := config.Load(flags, false)
	if err != nil {
		return err
	}
	dir := appservice.Dir(cfg.DataDir)
	regs, loadErr := appservice.LoadDir(dir)
	for _, reg := range regs {
		url := reg.URL
		if url == "" {
			url = "(no url: client API only)"
		}
		fmt.Printf("%s\t%s\t@%s:%s\t%s\n", reg.ID, reg.File, reg.SenderLocalpart, cfg.ServerName, url)
	}
	if loadErr != nil {
		fmt.Fprintln(os.Stderr, loadErr)
	}
	if sub == "list" {
		if len(regs) == 0 && loadErr == nil {
			fmt.Printf("no registration files in %s\n", dir)
		}
		return nil
	}
	if err := requireData(cfg); err != nil {
		return err
	}
	return recordReload(cfg, len(regs))
}

func recordReload(cfg config.Config, loaded int) error {
	ctx := context.Background()
	db, err := node.OpenDB(ctx, cfg, node.NewLogger(cfg, io.Discard))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := appservice.RecordReload(ctx, db); err != nil {
		return err
	}
	fmt.Printf("asked the node to reload: %d registration(s) will load\n", loaded)
	return nil
}
