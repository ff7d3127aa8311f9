package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/matrixos/matrixos/internal/storage"
)

// BundleFormat names the proof bundle's format.
const BundleFormat = "org.matrixos.ledger.proof.v1"

// Bundle proves that an entry is in a log: everything Verify needs, offline.
type Bundle struct {
	Format string `json:"format"`
	// LogKey is the log's note verifier key (<name>+<hash>+<key>).
	LogKey string `json:"log_key"`
	// Checkpoint is the signed note (C2SP tlog-checkpoint) of the tree the
	// proof is for.
	Checkpoint string `json:"checkpoint"`
	// Index is the entry's index in the log.
	Index uint64 `json:"index"`
	// Entry is the entry's bytes as logged (see Entry.Marshal).
	Entry string `json:"entry"`
	// InclusionProof is the RFC 6962 inclusion proof of the entry in the
	// checkpoint's tree, each hash in base64.
	InclusionProof [][]byte `json:"inclusion_proof"`
}

// Checkpoint is a parsed C2SP tlog-checkpoint.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

var (
	// ErrNotLogged answers a proof request for an event the log does not
	// hold (yet).
	ErrNotLogged = errors.New("the event is not in the ledger")
	// ErrBackfilled answers a proof request for an event of backfilled
	// history (fetched from other servers, from before this server joined
	// or from a gap), which the log leaves out: this server did not accept
	// it as it happened, so its place in the log would say nothing of when
	// it was sent. It is an ErrNotLogged.
	ErrBackfilled = fmt.Errorf("%w: it is history this server fetched from other servers (backfill), which the ledger does not log", ErrNotLogged)
	// ErrNotCheckpointed answers a proof request for an entry that no
	// checkpoint covers yet (one is signed within a second).
	ErrNotCheckpointed = errors.New("the event is not in a signed checkpoint yet")
)

// Prover builds proof bundles from a log's directory and the ledger's
// tables; it needs no running log (the CLI uses it beside a running node).
type Prover struct {
	db  *storage.DB
	dir string
	key string
}

// NewProver returns the prover of the log in dir whose note verifier key is
// vkey.
func NewProver(db *storage.DB, dir, vkey string) *Prover {
	return &Prover{db: db, dir: dir, key: vkey}
}

// Index returns the log index of an event (ErrNotLogged when it has none).
func (p *Prover) Index(ctx context.Context, eventID string) (uint64, error) {
	var idx int64
	err := p.db.QueryRow(ctx, "SELECT log_index FROM ledger_entries WHERE event_id = $1", eventID).Scan(&idx)
	if errors.Is(err, errNoRows) {
		return 0, p.notLogged(ctx, eventID)
	}
	if err != nil {
		return 0, fmt.Errorf("ledger index of %s: %w", eventID, err)
	}
	return uint64(idx), nil
}

// notLogged says why an event is not logged: ErrBackfilled for backfilled
// history (a negative stream position), ErrNotLogged otherwise.
func (p *Prover) notLogged(ctx context.Context, eventID string) error {
	var pos int64
	err := p.db.QueryRow(ctx, "SELECT pos FROM events WHERE event_id = $1", eventID).Scan(&pos)
	switch {
	case err == nil && pos < 0:
		return ErrBackfilled
	case err != nil && !errors.Is(err, errNoRows):
		return fmt.Errorf("read event %s: %w", eventID, err)
	}
	return ErrNotLogged
}

// Prove returns the proof bundle of an event against the latest checkpoint.
func (p *Prover) Prove(ctx context.Context, eventID string) (*Bundle, error) {
	idx, err := p.Index(ctx, eventID)
	if err != nil {
		return nil, err
	}
	b, err := p.ProveIndex(ctx, idx)
	if err != nil {
		return nil, err
	}
	if e, err := ParseEntry([]byte(b.Entry)); err != nil || e.EventID != eventID {
		return nil, fmt.Errorf("ledger entry %d is not the one recorded for %s (%q)", idx, eventID, b.Entry)
	}
	return b, nil
}

// ProveIndex returns the proof bundle of the entry at idx against the
// latest checkpoint.
func (p *Prover) ProveIndex(ctx context.Context, idx uint64) (*Bundle, error) {
	fetch := client.FileFetcher{Root: p.dir}
	raw, cp, err := p.witnessedCheckpoint()
	if err != nil || idx >= cp.Size {
		raw, err = fetch.ReadCheckpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("read ledger checkpoint: %w", err)
		}
		cp, err = OpenCheckpoint(raw, p.key)
		if err != nil {
			return nil, fmt.Errorf("ledger checkpoint: %w", err)
		}
	}
	if idx >= cp.Size {
		return nil, ErrNotCheckpointed
	}
	entries, err := readEntryBytes(ctx, fetch, idx, cp.Size)
	if err != nil {
		return nil, err
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, fetch.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("ledger proof: %w", err)
	}
	hashes, err := pb.InclusionProof(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("ledger inclusion proof of %d in %d: %w", idx, cp.Size, err)
	}
	return &Bundle{
		Format: BundleFormat, LogKey: p.key, Checkpoint: string(raw),
		Index: idx, Entry: string(entries), InclusionProof: hashes,
	}, nil
}

// witnessedCheckpoint reads the latest checkpoint witnesses cosigned (see
// WitnessedCheckpointPath); an error when there is none.
func (p *Prover) witnessedCheckpoint() ([]byte, *Checkpoint, error) {
	raw, err := os.ReadFile(filepath.Join(p.dir, WitnessedCheckpointPath))
	if err != nil {
		return nil, nil, err
	}
	cp, err := OpenCheckpoint(raw, p.key)
	if err != nil {
		return nil, nil, err
	}
	return raw, cp, nil
}

// Cosigned reports whether a bundle's checkpoint carries cosignatures
// (signatures besides the log's).
func (b *Bundle) Cosigned() bool {
	_, sigs, _ := strings.Cut(b.Checkpoint, "\n\n")
	return strings.Count(sigs, "\n") > 1
}

// ConsistencyProof returns the proof that the tree of size smaller is a
// prefix of the tree of size larger (at most the latest checkpoint's).
func (p *Prover) ConsistencyProof(ctx context.Context, smaller, larger uint64) ([][]byte, error) {
	pb, err := client.NewProofBuilder(ctx, larger, client.FileFetcher{Root: p.dir}.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("ledger proof: %w", err)
	}
	return pb.ConsistencyProof(ctx, smaller, larger)
}

// Checkpoint returns the latest signed checkpoint and its parsed form.
func (p *Prover) Checkpoint(ctx context.Context) ([]byte, *Checkpoint, error) {
	raw, err := client.FileFetcher{Root: p.dir}.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read ledger checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(raw, p.key)
	if err != nil {
		return nil, nil, err
	}
	return raw, cp, nil
}

// readEntryBytes reads the bytes of the entry at idx in a log of size
// logSize.
func readEntryBytes(ctx context.Context, fetch client.FileFetcher, idx, logSize uint64) ([]byte, error) {
	bundleIdx := idx / layout.EntryBundleWidth
	b, err := client.GetEntryBundle(ctx, fetch.ReadEntryBundle, bundleIdx, logSize)
	if err != nil {
		return nil, fmt.Errorf("read ledger entry bundle %d: %w", bundleIdx, err)
	}
	off := idx % layout.EntryBundleWidth
	if off >= uint64(len(b.Entries)) {
		return nil, fmt.Errorf("ledger entry bundle %d has no entry %d", bundleIdx, idx)
	}
	return b.Entries[off], nil
}

// OpenCheckpoint checks a checkpoint's signature by the key vkey and parses
// it; its origin must be the key's name.
func OpenCheckpoint(raw []byte, vkey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log key %q: %w", vkey, err)
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("checkpoint not signed by the log key %s: %w", vkey, err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return nil, errors.New("checkpoint: fewer than three lines")
	}
	cp := &Checkpoint{Origin: lines[0]}
	if cp.Origin != v.Name() {
		return nil, fmt.Errorf("checkpoint of log %q signed by the key of %q", cp.Origin, v.Name())
	}
	if cp.Size, err = strconv.ParseUint(lines[1], 10, 64); err != nil {
		return nil, fmt.Errorf("checkpoint size %q: %w", lines[1], err)
	}
	if cp.Root, err = base64.StdEncoding.DecodeString(lines[2]); err != nil || len(cp.Root) != 32 {
		return nil, fmt.Errorf("checkpoint root hash %q is not 32 bytes of base64", lines[2])
	}
	return cp, nil
}

// Verified is what a valid bundle proves.
type Verified struct {
	Entry      Entry
	Index      uint64
	Checkpoint Checkpoint
	Key        string
	// Witnesses are the names of the trusted witnesses that cosigned the
	// checkpoint (VerifyWitnessed only).
	Witnesses []string
}

// ErrNoTrustedKey answers a verification without a trusted key: the key a
// bundle names proves nothing, as anyone can make a log of their own and
// sign a bundle naming any server with it.
var ErrNoTrustedKey = errors.New("not checked against a trusted key: the log key must come from the server, not from the bundle")

// Verify checks a proof bundle offline: that it names trustedKey (the log's
// note verifier key, which the caller got from the server), the
// checkpoint's signature by that key, the entry's form, and its inclusion
// proof against the checkpoint's root. The error says what is wrong; an
// empty trustedKey is ErrNoTrustedKey.
func Verify(data []byte, trustedKey string) (*Verified, error) {
	if trustedKey == "" {
		return nil, ErrNoTrustedKey
	}
	var b Bundle
	cp, err := openSigned(data, &b, "proof bundle", BundleFormat, trustedKey)
	if err != nil {
		return nil, err
	}
	entry, err := ParseEntry([]byte(b.Entry))
	if err != nil {
		return nil, err
	}
	if err := verifyIncluded(b.Index, b.Entry, b.InclusionProof, cp); err != nil {
		return nil, err
	}
	return &Verified{Entry: entry, Index: b.Index, Checkpoint: *cp, Key: b.LogKey}, nil
}

// signedDocument is what a proof bundle and an export both carry.
type signedDocument interface {
	format() string
	logKey() string
	checkpoint() string
}

func (b *Bundle) format() string     { return b.Format }
func (b *Bundle) logKey() string     { return b.LogKey }
func (b *Bundle) checkpoint() string { return b.Checkpoint }
func (x *Export) format() string     { return x.Format }
func (x *Export) logKey() string     { return x.LogKey }
func (x *Export) checkpoint() string { return x.Checkpoint }

// openSigned decodes data, a document of the given kind, into doc
// (refusing unknown fields), checks its format and that it names
// trustedKey, and opens its checkpoint with that key.
func openSigned(data []byte, doc signedDocument, kind, format, trustedKey string) (*Checkpoint, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(doc); err != nil {
		return nil, fmt.Errorf("not a %s: %w", kind, err)
	}
	if doc.format() != format {
		return nil, fmt.Errorf("not a %s: format %q, want %q", kind, doc.format(), format)
	}
	if doc.logKey() != trustedKey {
		return nil, fmt.Errorf("the %s is for the log key %s, not the trusted key %s", kind, doc.logKey(), trustedKey)
	}
	return OpenCheckpoint([]byte(doc.checkpoint()), trustedKey)
}

// verifyIncluded checks that entry is the leaf at index of the
// checkpoint's tree, by its inclusion proof.
func verifyIncluded(index uint64, entry string, inclusion [][]byte, cp *Checkpoint) error {
	if index >= cp.Size {
		return fmt.Errorf("entry index %d is outside the checkpoint's tree of size %d", index, cp.Size)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf([]byte(entry))
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, leaf, inclusion, cp.Root); err != nil {
		return fmt.Errorf("the entry at index %d is not in the checkpoint's tree: %w", index, err)
	}
	return nil
}

// ErrTooFewWitnesses answers a verification whose checkpoint fewer of the
// trusted witnesses cosigned than the threshold asks.
var ErrTooFewWitnesses = errors.New("the checkpoint is not cosigned by enough of the trusted witnesses")

// VerifyWitnessed is Verify that also requires the bundle's checkpoint to
// carry valid cosignatures (C2SP tlog-cosignature) by at least threshold
// of the witnesses, given by their cosignature verifier keys (a node
// publishes its own at /_matrixos/ledger/v1/witness/key on its federation
// listener; matrixos ledger key prints it). Verified.Witnesses names those
// that cosigned.
func VerifyWitnessed(data []byte, trustedKey string, witnesses []string, threshold int) (*Verified, error) {
	v, err := Verify(data, trustedKey)
	if err != nil {
		return nil, err
	}
	witnesses = slices.Compact(slices.Sorted(slices.Values(witnesses)))
	if threshold < 1 || threshold > len(witnesses) {
		return nil, fmt.Errorf("a threshold of %d witnesses out of the %d given keys", threshold, len(witnesses))
	}
	verifiers := make([]note.Verifier, len(witnesses))
	for i, key := range witnesses {
		if verifiers[i], err = fnote.NewVerifierForCosignatureV1(key); err != nil {
			return nil, fmt.Errorf("witness key %q: %w", key, err)
		}
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("not a proof bundle: %w", err)
	}
	n, err := note.Open([]byte(b.Checkpoint), note.VerifierList(verifiers...))
	var unverified *note.UnverifiedNoteError
	switch {
	case errors.As(err, &unverified):
		// no trusted witness cosigned it
	case err != nil:
		return nil, fmt.Errorf("checkpoint cosignatures: %w", err)
	default:
		for _, s := range n.Sigs {
			v.Witnesses = append(v.Witnesses, s.Name)
		}
	}
	v.Witnesses = slices.Compact(slices.Sorted(slices.Values(v.Witnesses)))
	if len(v.Witnesses) < threshold {
		return nil, fmt.Errorf("%w: cosigned by %d (%s), %d required", ErrTooFewWitnesses, len(v.Witnesses), strings.Join(v.Witnesses, ", "), threshold)
	}
	return v, nil
}
