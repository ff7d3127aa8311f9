package ledger_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/storage"
)

// testLog is a log on a fresh SQLite database and directory.
type testLog struct {
	*ledger.Log
	dir   string
	db    *storage.DB
	close func()
}

func openTestLog(t testing.TB) *testLog {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := storage.Open(ctx, filepath.Join(dir, "t.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, ledger.Migrations); err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return openTestLogAt(t, db, filepath.Join(dir, "ledger"), key)
}

// openTestLogAt opens the log in logDir, closed when the test ends.
func openTestLogAt(t testing.TB, db *storage.DB, logDir string, key ed25519.PrivateKey) *testLog {
	t.Helper()
	l, err := ledger.Open(context.Background(), db, testLogger(t), ledger.Options{Dir: logDir, Origin: ledger.EventsOrigin("test.example"), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var closed bool
	t.Cleanup(func() {
		if closed {
			return
		}
		if err := l.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	tl := &testLog{Log: l, dir: logDir, db: db}
	tl.close = func() {
		closed = true
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return tl
}

// entries makes n distinct entries, numbered from first.
func entries(first, n int) []ledger.Entry {
	out := make([]ledger.Entry, n)
	for i := range out {
		out[i] = ledger.Entry{
			RoomID:      fmt.Sprintf("!room%d:test.example", (first+i)%7),
			EventID:     fmt.Sprintf("$event%d", first+i),
			ContentHash: fmt.Sprintf("hash%d", first+i),
		}
	}
	return out
}

// appendAll appends n entries from first, in batches.
func appendAll(t testing.TB, l *testLog, first, n int) {
	t.Helper()
	for i := 0; i < n; i += 1000 {
		if _, err := l.Append(context.Background(), entries(first+i, min(1000, n-i))); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCheckpoint waits for a checkpoint of at least size entries and
// returns it, signed note and parsed.
func waitCheckpoint(t testing.TB, l *testLog, size uint64) ([]byte, *ledger.Checkpoint) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, cp, err := l.Prover().Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size >= size {
			return raw, cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d entries after 10s (latest: %d)", size, cp.Size)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// independentCheckpoint checks a checkpoint with golang.org/x/mod's note
// and tlog packages, not the code that made it, and returns its tree.
func independentCheckpoint(t testing.TB, raw []byte, vkey string) tlog.Tree {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint signature: %v", err)
	}
	var origin, root string
	var size int64
	if _, err := fmt.Sscanf(n.Text, "%s\n%d\n%s\n", &origin, &size, &root); err != nil {
		t.Fatalf("checkpoint %q: %v", n.Text, err)
	}
	if origin != v.Name() {
		t.Fatalf("checkpoint origin %q, key %q", origin, v.Name())
	}
	h, err := tlog.ParseHash(root)
	if err != nil {
		t.Fatal(err)
	}
	return tlog.Tree{N: size, Hash: h}
}

func hashes(b [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(b))
	for i, h := range b {
		copy(out[i][:], h)
	}
	return out
}

func randomBelow(t testing.TB, n uint64) uint64 {
	v, err := rand.Int(rand.Reader, new(big.Int).SetUint64(n))
	if err != nil {
		t.Fatal(err)
	}
	return v.Uint64()
}

// TestHundredThousandEntries appends 100,000 entries and checks inclusion
// proofs of random ones and consistency proofs between checkpoints taken
// along the way with golang.org/x/mod/sumdb/tlog, an implementation
// independent of the one (transparency-dev/merkle, through Tessera) that
// made them; Verify agrees on the same bundles.
func TestHundredThousandEntries(t *testing.T) {
	const total = 100_000
	ctx := context.Background()
	l := openTestLog(t)
	var trees []tlog.Tree
	start := time.Now()
	for _, upTo := range []int{1, 1000, 25_000, 60_001, total} {
		size, err := l.Size(ctx)
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, l, int(size), upTo-int(size))
		raw, _ := waitCheckpoint(t, l, uint64(upTo))
		tree := independentCheckpoint(t, raw, l.PublicKey)
		if tree.N != int64(upTo) {
			t.Fatalf("checkpoint of %d entries, want %d", tree.N, upTo)
		}
		trees = append(trees, tree)
	}
	t.Logf("%d entries appended and checkpointed in %v", total, time.Since(start))
	final := trees[len(trees)-1]

	for range 200 {
		idx := randomBelow(t, total)
		b, err := l.Prover().Prove(ctx, fmt.Sprintf("$event%d", idx))
		if err != nil {
			t.Fatal(err)
		}
		if b.Index != idx {
			t.Fatalf("$event%d at index %d", idx, b.Index)
		}
		tree := independentCheckpoint(t, []byte(b.Checkpoint), b.LogKey)
		if tree != final {
			t.Fatalf("bundle's tree %+v, want %+v", tree, final)
		}
		leaf := tlog.RecordHash([]byte(b.Entry))
		if err := tlog.CheckRecord(hashes(b.InclusionProof), tree.N, tree.Hash, int64(idx), leaf); err != nil {
			t.Fatalf("inclusion proof of %d: %v", idx, err)
		}
		raw, _ := json.Marshal(b)
		v, err := ledger.Verify(raw, l.PublicKey)
		if err != nil {
			t.Fatalf("Verify of %d: %v", idx, err)
		}
		if v.Entry.EventID != fmt.Sprintf("$event%d", idx) {
			t.Fatalf("verified entry %+v", v.Entry)
		}
	}

	for i, older := range trees {
		for _, newer := range trees[i+1:] {
			p, err := l.Prover().ConsistencyProof(ctx, uint64(older.N), uint64(newer.N))
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(hashes(p), newer.N, newer.Hash, older.N, older.Hash); err != nil {
				t.Fatalf("consistency %d -> %d: %v", older.N, newer.N, err)
			}
		}
	}
	// A consistency proof does not link a tree with a forged root.
	p, err := l.Prover().ConsistencyProof(ctx, uint64(trees[2].N), uint64(final.N))
	if err != nil {
		t.Fatal(err)
	}
	forged := trees[2].Hash
	forged[0] ^= 1
	if err := tlog.CheckTree(hashes(p), final.N, final.Hash, trees[2].N, forged); err == nil {
		t.Fatal("a consistency proof links a forged root")
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// tWriter writes log lines into the test's log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// proveBundle proves an entry appended with entries() and returns the
// bundle's JSON.
func proveBundle(t testing.TB, l *testLog, eventID string) []byte {
	t.Helper()
	b, err := l.Prover().Prove(context.Background(), eventID)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestStoredTamperingDetected: someone with the disk (the server's admin)
// changes a stored entry, or drops one, after its checkpoint was signed:
// the bundles proved from the changed log no longer verify.
func TestStoredTamperingDetected(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(entries [][]byte) [][]byte
		prove  string // the event whose bundle must fail
	}{
		{"changed entry", func(e [][]byte) [][]byte {
			e[5] = []byte(strings.Replace(string(e[5]), `"content_hash":"hash5"`, `"content_hash":"hash6"`, 1))
			return e
		}, "$event5"},
		{"dropped entry", func(e [][]byte) [][]byte { return append(e[:5:5], e[6:]...) }, "$event6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openTestLog(t)
			appendAll(t, l, 0, 10)
			waitCheckpoint(t, l, 10)
			if _, err := ledger.Verify(proveBundle(t, l, tc.prove), l.PublicKey); err != nil {
				t.Fatalf("before the change: %v", err)
			}
			path := filepath.Join(l.dir, "tile", "entries", "000.p", "10")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var bundle api.EntryBundle
			if err := bundle.UnmarshalText(raw); err != nil {
				t.Fatal(err)
			}
			var out []byte
			for _, e := range tc.change(bundle.Entries) {
				out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
				out = append(out, e...)
			}
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatal(err)
			}
			idx, err := l.Prover().Index(ctx, tc.prove)
			if err != nil {
				t.Fatal(err)
			}
			b, err := l.Prover().ProveIndex(ctx, idx)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ = json.Marshal(b)
			if _, err := ledger.Verify(raw, l.PublicKey); err == nil || !strings.Contains(err.Error(), "not in the checkpoint's tree") {
				t.Fatalf("Verify of %s after the %s: %v, want not in the tree", tc.prove, tc.name, err)
			}
		})
	}
}

// BenchmarkAppend appends batches of 1,000 entries and reports entries
// per second, each batch integrated and recorded.
func BenchmarkAppend(b *testing.B) {
	l := openTestLog(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := l.Append(context.Background(), entries(i*1000, 1000)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkProve builds proof bundles of random entries of a log of
// 100,000 entries; BenchmarkVerify checks them.
func BenchmarkProve(b *testing.B) {
	l := provedLog(b)
	for b.Loop() {
		proveBundle(b, l, fmt.Sprintf("$event%d", randomBelow(b, 100_000)))
	}
}

func BenchmarkVerify(b *testing.B) {
	l := provedLog(b)
	bundles := make([][]byte, 100)
	for i := range bundles {
		bundles[i] = proveBundle(b, l, fmt.Sprintf("$event%d", randomBelow(b, 100_000)))
	}
	i := 0
	for b.Loop() {
		if _, err := ledger.Verify(bundles[i%len(bundles)], l.PublicKey); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func provedLog(b *testing.B) *testLog {
	l := openTestLog(b)
	appendAll(b, l, 0, 100_000)
	waitCheckpoint(b, l, 100_000)
	return l
}

// TestCheckpointSignedAgainAfterKeyRotation: a log opened with a new
// signing key signs its checkpoint again at once, without waiting for new
// entries, so proofs verify with the new key.
func TestCheckpointSignedAgainAfterKeyRotation(t *testing.T) {
	l := openTestLog(t)
	appendAll(t, l, 0, 10)
	waitCheckpoint(t, l, 10)
	l.close()
	_, newKey, _ := ed25519.GenerateKey(rand.Reader)
	l2 := openTestLogAt(t, l.db, l.dir, newKey)
	if l2.PublicKey == l.PublicKey {
		t.Fatal("the new key is the old one")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := l2.Prover().Prove(context.Background(), "$event3")
		if err == nil {
			raw, _ := json.Marshal(b)
			if _, err := ledger.Verify(raw, l2.PublicKey); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proof with the new key after 5s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forgedBundle returns the proof bundle of a one-entry log that claims the
// origin of the server victim but is signed with a fresh key, as anyone can
// make one.
func forgedBundle(t testing.TB, victim string) []byte {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	origin := ledger.EventsOrigin(victim)
	signer, vkey, err := ledger.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	entry := ledger.Entry{RoomID: "!room:" + victim, EventID: "$forged", ContentHash: "AAAA"}.Marshal()
	root := rfc6962.DefaultHasher.HashLeaf(entry)
	cp, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n1\n%s\n", origin, base64.StdEncoding.EncodeToString(root))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ledger.Bundle{Format: ledger.BundleFormat, LogKey: vkey, Checkpoint: string(cp), Index: 0, Entry: string(entry), InclusionProof: [][]byte{}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestVerifyRefusesForgedLog: a bundle of a log that names another server
// but is signed with a key of its own is refused, both without a trusted
// key (the key a bundle names proves nothing) and against that server's
// key; the same bundle checks out against its own key, so the forgery is
// well formed and only the key is wrong.
func TestVerifyRefusesForgedLog(t *testing.T) {
	l := openTestLog(t)
	raw := forgedBundle(t, "victim.example")
	if _, err := ledger.Verify(raw, ""); !errors.Is(err, ledger.ErrNoTrustedKey) {
		t.Fatalf("Verify without a trusted key: %v, want %v", err, ledger.ErrNoTrustedKey)
	}
	if _, err := ledger.Verify(raw, l.PublicKey); err == nil || !strings.Contains(err.Error(), "not the trusted key") {
		t.Fatalf("Verify against the server's key: %v, want a refusal", err)
	}
	var b ledger.Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	v, err := ledger.Verify(raw, b.LogKey)
	if err != nil {
		t.Fatalf("the forgery against its own key: %v", err)
	}
	if v.Checkpoint.Origin != ledger.EventsOrigin("victim.example") || v.Entry.EventID != "$forged" {
		t.Fatalf("the forgery proves %+v", v)
	}
}
