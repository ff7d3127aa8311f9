package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/node"
)

const bridgeUsage = `usage: matrixos bridge list|enable|disable|status [NAME] [flags]

  list                 the bridges: built in, and external ones enabled before
  enable NAME          write the bridge's registration and config (once) and
                       start it; the running node starts it within a second
  enable NAME --binary /path/to/mautrix-bridge
                       an external mautrix bridgev2 program, run as a child
                       process (its config made from the program's -e example)
  disable NAME         stop it; its files and database stay
  status NAME          its health (as the running node last wrote it) and
                       the last lines of its log

Files: <data>/bridges/NAME/ (config.yaml, bridge.db, bridge.log) and
<data>/appservices/bridge-NAME.yaml. See docs/bridges.md.`

// bridgeCmd is `matrixos bridge list|enable|disable|status NAME`.
func bridgeCmd(args []string) error {
	return runBridge(args, node.BuiltinBridges(), os.Stdout)
}

// runBridge runs a bridge command with the built-in bridges kinds.
func runBridge(args []string, kinds []bridges.Kind, out io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(out, bridgeUsage)
		return nil
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "enable", "disable", "status":
	default:
		return fmt.Errorf("unknown command %q\n%s", sub, bridgeUsage)
	}
	var name, binary string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	maxArgs := 0
	if name == "" && sub != "list" {
		maxArgs = 1
	}
	flags, rest, err := parseFlags("bridge "+sub, args, maxArgs, func(fs *flag.FlagSet) {
		if sub == "enable" {
			fs.StringVar(&binary, "binary", "", "run an external mautrix bridgev2 `program` (absolute path) as a child process")
		}
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		name = rest[0]
	}
	if sub == "list" && name != "" {
		return fmt.Errorf("unexpected argument %q: bridge list takes no name", name)
	}
	if sub != "list" && name == "" {
		return fmt.Errorf("bridge %s: which bridge? (matrixos bridge list shows them)", sub)
	}
	cfg, _, err := config.Load(flags, false)
	if err != nil {
		return err
	}
	if err := requireData(cfg); err != nil {
		return err
	}
	// Bridge files written as another user (root) would be unreadable to
	// the node, or not private to its user.
	if err := requireOwner(cfg.DataDir); err != nil {
		return err
	}
	ctx := context.Background()
	log := node.NewLogger(cfg, io.Discard)
	db, err := node.OpenDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	m := bridges.New(db, log, bridges.Options{
		DataDir: cfg.DataDir, ServerName: cfg.ServerName, Kinds: kinds,
		Accounts: accounts.New(db, log, node.AccountsOptions(cfg)),
	})
	switch sub {
	case "list":
		list, err := m.List(ctx)
		if err != nil {
			return err
		}
		printBridges(out, list)
		return nil
	case "enable":
		st, err := m.Enable(ctx, name, binary)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "bridge %s enabled: files in %s; the running node starts it (or the node at its next start)\n", name, st.Dir)
		return nil
	case "disable":
		if _, err := m.Disable(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(out, "bridge %s disabled: the running node stops it; its files and database stay\n", name)
		return nil
	default:
		st, err := m.Status(ctx, name)
		if err != nil {
			return err
		}
		printStatus(out, st)
		return nil
	}
}

func printBridges(out io.Writer, list []bridges.Status) {
	if len(list) == 0 {
		fmt.Fprintln(out, "no bridges")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENABLED\tSTATE\tRESTARTS\tDESCRIPTION")
	for _, st := range list {
		fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\n", st.Name, st.Enabled, st.State, st.Restarts, st.Description)
	}
	tw.Flush()
}

func printStatus(out io.Writer, st bridges.Status) {
	fmt.Fprintf(out, "bridge:      %s (%s)\n", st.Name, st.Description)
	fmt.Fprintf(out, "enabled:     %v\n", st.Enabled)
	state := st.State
	if st.SinceTS > 0 {
		state += " since " + time.UnixMilli(st.SinceTS).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(out, "state:       %s\n", state)
	fmt.Fprintf(out, "restarts:    %d\n", st.Restarts)
	if st.LastError != "" {
		fmt.Fprintf(out, "last error:  %s\n", st.LastError)
	}
	if st.BridgeState != "" {
		fmt.Fprintf(out, "reported:    %s\n", st.BridgeState)
	}
	if st.Binary != "" {
		fmt.Fprintf(out, "program:     %s\n", st.Binary)
	}
	fmt.Fprintf(out, "files:       %s\n", st.Dir)
	if len(st.RecentLogs) > 0 {
		fmt.Fprintln(out, "recent log:")
		for _, l := range st.RecentLogs {
			fmt.Fprintln(out, "  "+l)
		}
	}
}
