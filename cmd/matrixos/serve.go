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

// loadConfig parses a command's flags, refuses more than maxArgs
// positional arguments (before anything is written) and loads the
// configuration. It returns the positional arguments.
func loadConfig(name string, args []string, maxArgs int, create bool, extra func(fs *flag.FlagSet)) (config.Config, string, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	flags := config.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return config.Config{}, "", nil, err
	}
	if fs.NArg() > maxArgs {
		return config.Config{}, "", nil, fmt.Errorf("unexpected argument %q (a flag's value goes after it: --name value or --name=value)", fs.Arg(maxArgs))
	}
	cfg, path, err := config.Load(flags, create)
	return cfg, path, fs.Args(), err
}

func serve(args []string) error {
	start := time.Now()
	cfg, path, _, err := loadConfig("serve", args, 0, true, nil)
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
	cfg, path, _, err := loadConfig("config", args, 0, false, nil)
	if err != nil {
		return err
	}
	fmt.Printf("# effective configuration (file: %s)\n", path)
	fmt.Printf("data: %s\n", cfg.DataDir)
	os.Stdout.Write(cfg.Commented())
	return nil
}
