package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
)

func loadConfig(name string, args []string, create bool, extra func(fs *flag.FlagSet)) (config.Config, string, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	flags := config.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return config.Config{}, "", nil, err
	}
	cfg, path, err := config.Load(flags, create)
	return cfg, path, fs, err
}

func serve(args []string) error {
	start := time.Now()
	cfg, path, _, err := loadConfig("serve", args, true, nil)
	if err != nil {
		return err
	}
	log := node.NewLogger(cfg, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		n.Shutdown(context.Background())
		return err
	}
	log.Info("node started", "server_name", cfg.ServerName, "listen", n.Addr, "database", n.DB.Dialect.String(), "startup", time.Since(start).String())
	fmt.Fprint(os.Stdout, n.Banner(path))
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(sctx)
}

func version(args []string) error {
	fmt.Println("matrixos", node.Version)
	return nil
}

func printConfig(args []string) error {
	cfg, path, _, err := loadConfig("config", args, false, nil)
	if err != nil {
		return err
	}
	fmt.Printf("# effective configuration (file: %s)\n", path)
	fmt.Printf("data: %s\n", cfg.DataDir)
	os.Stdout.Write(cfg.Commented())
	return nil
}
