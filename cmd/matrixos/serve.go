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

// parseFlags parses a command's flags and refuses more than maxArgs
// positional arguments, before anything is read or written. It returns the
// positional arguments.
func parseFlags(name string, args []string, maxArgs int, extra func(fs *flag.FlagSet)) (*config.Flags, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	flags := config.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return nil, nil, err
	}
	if fs.NArg() > maxArgs {
		return nil, nil, fmt.Errorf("unexpected argument %q (a flag's value goes after it: --name value or --name=value)", fs.Arg(maxArgs))
	}
	return flags, fs.Args(), nil
}

func serve(args []string) error {
	start := time.Now()
	flags, _, err := parseFlags("serve", args, 0, nil)
	if err != nil {
		return err
	}
	cfg, path, err := config.Load(flags, true)
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
	if cfg.OpenRegistration {
		log.Warn("open registration is on: anyone who can reach the node can create an account", "url", cfg.BaseURL())
	}
	fmt.Fprint(os.Stdout, n.Banner(ctx, path))
	reloadOnHangup(ctx, n)
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(sctx)
}

func version(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q: version takes none", args[0])
	}
	fmt.Println("matrixos", node.Version)
	return nil
}

func printConfig(args []string) error {
	flags, _, err := parseFlags("config", args, 0, nil)
	if err != nil {
		return err
	}
	cfg, path, err := config.Load(flags, false)
	if err != nil {
		return err
	}
	fmt.Printf("# effective configuration (file: %s; secrets shown as xxxxx)\n", path)
	fmt.Printf("data: %s\n", cfg.DataDir)
	redacted := cfg.Redacted()
	os.Stdout.Write(redacted.Commented())
	return nil
}

// reloadOnHangup reloads the appservice registrations on each SIGHUP until
// ctx is done (the node logs the files it refuses).
func reloadOnHangup(ctx context.Context, n *node.Node) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				n.ReloadAppservices(ctx)
			}
		}
	}()
}
