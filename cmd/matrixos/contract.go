package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/contracts"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/rooms"
)

const contractUsage = `usage: matrixos contract replay ROOM_ID [--data DIR]

Reruns the contracts attached to a room from the node's events log
(docs/contracts.md): the entries of the latest signed checkpoint, checked
against its root, the events they name (checked against their content
hashes) and the uploaded modules; every result the log holds must come out
the same. Exit status 0 when all do.`

// contractCmd runs "matrixos contract replay ROOM_ID".
func contractCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		return errors.New(contractUsage)
	}
	args = args[1:]
	var roomID string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		roomID, args = args[0], args[1:]
	}
	flags, rest, err := parseFlags("contract replay", args, 1, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		roomID = rest[0]
	}
	if !strings.HasPrefix(roomID, "!") {
		return errors.New(contractUsage)
	}
	cfg, vkey, err := ledgerConfig(flags)
	if err != nil {
		return err
	}
	ctx := context.Background()
	log := node.NewLogger(cfg, io.Discard)
	db, err := node.OpenDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	_, cp, err := ledger.NewProver(db, node.LedgerDir(cfg), vkey).Checkpoint(ctx)
	if err != nil {
		return err
	}
	entries, err := ledger.CheckedEntries(ctx, node.LedgerDir(cfg), cp)
	if err != nil {
		return err
	}
	rt, err := contracts.NewRuntime(ctx, contracts.DefaultLimits)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	engine := rooms.New(db, log, rooms.Signer{ServerName: cfg.ServerName})
	report, err := contracts.Replay(ctx, rt, id.RoomID(roomID), id.NewUserID(contracts.BotLocalpart, cfg.ServerName), contracts.ReplaySource{
		Entries: entries,
		Event:   engine.Event,
		Module: func(ctx context.Context, hash string) ([]byte, error) {
			return contracts.LoadModule(ctx, db, hash)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "log %s: %d entries; room %s: %d calls replayed, %d results logged\n", cp.Origin, cp.Size, roomID, report.Calls, report.Results)
	for _, m := range report.Mismatches {
		fmt.Fprintf(out, "mismatch: %s on %s: logged %s, replayed %s\n", m.Attachment, m.Input, orNone(m.Logged), orNone(m.Replayed))
	}
	if len(report.Mismatches) > 0 {
		return fmt.Errorf("%d results do not replay", len(report.Mismatches))
	}
	fmt.Fprintln(out, "every result replays")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
