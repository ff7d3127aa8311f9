package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidwall/gjson"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/node"
)

// ledgerCmd runs "matrixos ledger prove|verify|key|enable|disable|status".
func ledgerCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: matrixos ledger prove|verify|key|export|enable|disable|status ...")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "prove":
		return ledgerProve(args)
	case "verify":
		return ledgerVerify(args)
	case "key":
		return ledgerKey(args)
	case "export":
		return ledgerExport(args, os.Stdout)
	case "enable", "disable", "status":
		return ledgerRoom(sub, args, os.Stdout)
	}
	return fmt.Errorf("unknown ledger command %q: want prove, verify, key, export, enable, disable or status", sub)
}

// openProver opens the node's database, as the flags say, for reading
// the ledger's proofs; closeDB closes it.
func openProver(ctx context.Context, flags *config.Flags) (p *ledger.Prover, closeDB func(), err error) {
	cfg, vkey, err := ledgerConfig(flags)
	if err != nil {
		return nil, nil, err
	}
	db, err := node.OpenDB(ctx, cfg, node.NewLogger(cfg, io.Discard))
	if err != nil {
		return nil, nil, err
	}
	return ledger.NewProver(db, node.LedgerDir(cfg), vkey), func() { db.Close() }, nil
}

// ledgerProve writes the proof bundle of an event to standard output.
func ledgerProve(args []string) error {
	var eventID string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		eventID, args = args[0], args[1:]
	}
	flags, rest, err := parseFlags("ledger prove", args, 1, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		eventID = rest[0]
	}
	if !strings.HasPrefix(eventID, "$") {
		return errors.New("usage: matrixos ledger prove [--data DIR] EVENT_ID (an event ID starts with $)")
	}
	ctx := context.Background()
	prover, closeDB, err := openProver(ctx, flags)
	if err != nil {
		return err
	}
	defer closeDB()
	b, err := prover.Prove(ctx, eventID)
	switch {
	case errors.Is(err, ledger.ErrBackfilled):
		return fmt.Errorf("%s: %w", eventID, err)
	case errors.Is(err, ledger.ErrNotLogged):
		return fmt.Errorf("%s: %w (its room's ledger was off, or the node has not appended it yet)", eventID, err)
	case errors.Is(err, ledger.ErrNotCheckpointed):
		return fmt.Errorf("%s: %w; try again in a second while the node runs", eventID, err)
	case err != nil:
		return err
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

// ledgerVerify checks a proof bundle offline: exit status 0 and a summary
// for a valid one, an error saying what is wrong for any other.
func ledgerVerify(args []string) error {
	fs := flag.NewFlagSet("ledger verify", flag.ContinueOnError)
	key := fs.String("key", "", "the log's public key (as \"matrixos ledger key\" prints it or the server's .../events/key path serves it, or a file holding it) that must have signed the checkpoint (required)")
	var witnesses witnessFlag
	fs.Var(&witnesses, "witness", "a witness's cosignature key (as \"matrixos ledger key --witness\" prints it on the witness's node, or its federation listener serves at /_matrixos/ledger/v1/witness/key), or a file holding it; repeat it for each witness")
	threshold := fs.Int("threshold", 0, "how many of the --witness keys must have cosigned the checkpoint (default: all of them)")
	var file string
	if len(args) > 0 && (args[0] == "-" || !strings.HasPrefix(args[0], "-")) {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 && file == "" {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if file == "" {
		return errors.New("usage: matrixos ledger verify --key KEY FILE (- for standard input)")
	}
	data, err := readInput(file)
	if err != nil {
		return err
	}
	trusted, err := keyArg(*key)
	if err != nil {
		return err
	}
	if trusted == "" {
		return fmt.Errorf("%s: %w; pass --key with the key the server publishes (matrixos ledger key, or its /_matrixos/ledger/v1/events/key)", file, ledger.ErrNoTrustedKey)
	}
	if gjson.GetBytes(data, "format").String() == ledger.ExportFormat {
		if len(witnesses) > 0 || *threshold != 0 {
			return fmt.Errorf("%s: an export's checkpoint is not checked against witnesses (--witness is for proof bundles)", file)
		}
		return verifyExport(file, data, trusted)
	}
	v, err := verifyBundle(data, trusted, witnesses, *threshold)
	if err != nil {
		return fmt.Errorf("%s: invalid: %w", file, err)
	}
	fmt.Printf("valid: event %s of room %s (content hash %s) is entry %d of the log %s\n", v.Entry.EventID, v.Entry.RoomID, v.Entry.ContentHash, v.Index, v.Checkpoint.Origin)
	fmt.Printf("checkpoint: %d entries, root %s, signed by %s\n", v.Checkpoint.Size, base64.StdEncoding.EncodeToString(v.Checkpoint.Root), v.Key)
	if len(witnesses) > 0 {
		fmt.Printf("cosigned by %d of the %d witnesses given: %s\n", len(v.Witnesses), len(witnesses), strings.Join(v.Witnesses, ", "))
	}
	return nil
}

// verifyExport checks a compliance export offline and says what it
// proves.
func verifyExport(file string, data []byte, trusted string) error {
	v, err := ledger.VerifyExport(data, trusted)
	if err != nil {
		return fmt.Errorf("%s: invalid export: %w", file, err)
	}
	fmt.Printf("valid: %d events of room %s are in the log %s (contents checked: %d)\n", v.Events, v.RoomID, v.Checkpoint.Origin, v.Contents)
	fmt.Printf("checkpoint: %d entries, root %s, signed by %s\n", v.Checkpoint.Size, base64.StdEncoding.EncodeToString(v.Checkpoint.Root), v.Key)
	return nil
}

// ledgerExport writes a room's logged events with their inclusion proofs
// against the latest checkpoint (and, with --contents, the events) to
// standard output.
func ledgerExport(args []string, out io.Writer) error {
	var roomID string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		roomID, args = args[0], args[1:]
	}
	var contents bool
	maxArgs := 0
	if roomID == "" {
		maxArgs = 1
	}
	flags, rest, err := parseFlags("ledger export", args, maxArgs, func(fs *flag.FlagSet) {
		fs.BoolVar(&contents, "contents", false, "include each event as the server holds it (redacted ones redacted), checked against its entry by verify")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		roomID = rest[0]
	}
	if !strings.HasPrefix(roomID, "!") {
		return errors.New("usage: matrixos ledger export [--data DIR] [--contents] ROOM_ID (a room ID starts with !)")
	}
	ctx := context.Background()
	prover, closeDB, err := openProver(ctx, flags)
	if err != nil {
		return err
	}
	defer closeDB()
	x, err := prover.Export(ctx, roomID, ledger.ExportOptions{Contents: contents})
	if errors.Is(err, ledger.ErrNotLogged) {
		return fmt.Errorf("%w: no event of %s is in a checkpoint (its ledger is off, or the node has not appended yet)", err, roomID)
	}
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(x, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

// verifyBundle checks a bundle against the log key and, when witness keys
// are given, at least threshold of their cosignatures (all of them for 0).
func verifyBundle(data []byte, trusted string, witnesses []string, threshold int) (*ledger.Verified, error) {
	if len(witnesses) == 0 {
		if threshold != 0 {
			return nil, errors.New("--threshold needs --witness keys")
		}
		return ledger.Verify(data, trusted)
	}
	if threshold == 0 {
		threshold = len(witnesses)
	}
	return ledger.VerifyWitnessed(data, trusted, witnesses, threshold)
}

// witnessFlag collects the --witness keys: a key, or a file holding one.
type witnessFlag []string

func (w *witnessFlag) String() string { return strings.Join(*w, ",") }

func (w *witnessFlag) Set(v string) error {
	if _, err := fnote.NewVerifierForCosignatureV1(v); err == nil {
		*w = append(*w, v)
		return nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return fmt.Errorf("%q is neither a witness key (NAME+HASH+KEY) nor a readable file: %w", v, err)
	}
	*w = append(*w, strings.TrimSpace(string(b)))
	return nil
}

// ledgerKey prints the log's public key, or with --witness the node's
// witness key.
func ledgerKey(args []string) error {
	var witness bool
	flags, _, err := parseFlags("ledger key", args, 0, func(fs *flag.FlagSet) {
		fs.BoolVar(&witness, "witness", false, "print the key this node's witness cosigns other servers' checkpoints with, which \"matrixos ledger verify --witness\" takes")
	})
	if err != nil {
		return err
	}
	cfg, vkey, err := ledgerConfig(flags)
	if err != nil {
		return err
	}
	if witness {
		if vkey, err = witnessKey(cfg); err != nil {
			return err
		}
	}
	fmt.Println(vkey)
	return nil
}

// witnessKey returns the cosignature key of the node's witness, derived
// from its signing key (ledger.DeriveWitnessKey).
func witnessKey(cfg config.Config) (string, error) {
	_, nodeKey, err := node.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return "", err
	}
	key, err := ledger.DeriveWitnessKey(nodeKey)
	if err != nil {
		return "", err
	}
	return ledger.WitnessPublicKey(ledger.WitnessName(cfg.ServerName), key.Public().(ed25519.PublicKey))
}

// ledgerConfig loads the config of an existing node's data directory and
// the log's public key, that of the key derived from the node's signing
// key (ledger.DeriveKey).
func ledgerConfig(flags *config.Flags) (config.Config, string, error) {
	cfg, _, err := config.Load(flags, false)
	if err != nil {
		return cfg, "", err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, node.SigningKeyFile)); err != nil {
		return cfg, "", fmt.Errorf("no signing key in %s (pass --data DIR where \"matrixos serve\" keeps its data): %w", cfg.DataDir, err)
	}
	if err := requireData(cfg); err != nil {
		return cfg, "", err
	}
	_, nodeKey, err := node.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return cfg, "", err
	}
	key, err := ledger.DeriveKey(nodeKey)
	if err != nil {
		return cfg, "", err
	}
	vkey, err := ledger.PublicKey(ledger.EventsOrigin(cfg.ServerName), key.Public().(ed25519.PublicKey))
	return cfg, vkey, err
}

// readInput reads a file, or standard input for "-".
func readInput(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(file)
}

// keyArg is the --key value: a key, or a file holding one.
func keyArg(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if _, err := note.NewVerifier(v); err == nil {
		return v, nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return "", fmt.Errorf("--key %q is neither a log key (NAME+HASH+KEY) nor a readable file: %w", v, err)
	}
	return strings.TrimSpace(string(b)), nil
}
