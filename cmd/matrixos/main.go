// Command matrixos runs a Matrix OS node: a Matrix homeserver in one binary.
//
//	matrixos [serve] [flags]          run the node (the default)
//	matrixos user add NAME [--admin] [--password-file FILE] [--init]
//	matrixos user list | reset-password NAME | deactivate NAME
//	matrixos key rotate               new signing key; the old one stays verifiable
//	matrixos appservice list|reload   check the registration files; reload them in the running node
//	matrixos ledger prove EVENT_ID    write an event's proof bundle (docs/ledger.md)
//	matrixos ledger verify --key KEY FILE  check a proof bundle offline
//	matrixos ledger key               print the ledger's public key
//	matrixos ledger export ROOM_ID    write a room's logged events with their proofs
//	matrixos ledger enable|disable|status ROOM_ID  a room's ledger, through the node's admin API
//	matrixos contract replay ROOM_ID  rerun a room's contracts from the log (docs/contracts.md)
//	matrixos bridge list|enable|disable|status NAME [--binary PROGRAM]
//	matrixos version
//	matrixos config                   print the effective configuration
//
// Every command takes --data DIR (default ./matrixos-data) and --config FILE.
// The user commands refuse a data directory without a database unless
// --init is given, so that one run in the wrong directory does not create
// an empty node there.
package main

import (
	"fmt"
	"os"
)

func main() {
	privateUmask()
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "user":
		err = user(args)
	case "key":
		err = key(args)
	case "appservice":
		err = appserviceCmd(args)
	case "ledger":
		err = ledgerCmd(args)
	case "contract":
		err = contractCmd(args, os.Stdout)
	case "bridge":
		err = bridgeCmd(args)
	case "version":
		err = version(args)
	case "config":
		err = printConfig(args)
	case "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "matrixos: unknown command %q\n\n", cmd)
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "matrixos %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `Usage:
  matrixos [serve] [flags]                run the node (default)
  matrixos user add NAME [--admin] [--password-file FILE] [--init]
  matrixos user list
  matrixos user reset-password NAME [--password-file FILE]
  matrixos user deactivate NAME
  matrixos key rotate                     new signing key; the old one stays verifiable
  matrixos appservice list                check the registration files in <data>/appservices
  matrixos appservice reload              ... and make the running node load them again
  matrixos ledger prove EVENT_ID          write the event's proof bundle to standard output
  matrixos ledger verify --key KEY FILE   check a proof bundle offline (exit 0: valid)
  matrixos ledger key                     print the ledger's public key
  matrixos ledger export [--contents] ROOM_ID  a room's logged events with their proofs (verify checks it)
  matrixos ledger enable|disable ROOM_ID  turn a room's ledger on or off (admin token in $MATRIXOS_ADMIN_TOKEN)
  matrixos ledger status ROOM_ID          whether a room's ledger is on
  matrixos contract replay ROOM_ID        rerun a room's contracts from the log; every result must match
  matrixos bridge list|status NAME        the bridges and their health
  matrixos bridge enable|disable NAME     start or stop a bridge (--binary PROGRAM: an external one)
  matrixos version
  matrixos config                         print the effective configuration

Run "matrixos serve -h" for every setting.
`)
}
