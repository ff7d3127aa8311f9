package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// cosigner is a witness made for the test: its cosignature key and what
// signs with it.
type cosigner struct {
	vkey   string
	signer note.Signer
}

func newCosigner(t *testing.T, name string) cosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cosigner{vkey: cosig, signer: signer}
}

// cosign adds the witness's cosignature to a bundle's checkpoint.
func (c cosigner) cosign(t *testing.T, bundle []byte) []byte {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	cp := b["checkpoint"].(string)
	text, _, _ := strings.Cut(cp, "\n\n")
	signed, err := note.Sign(&note.Note{Text: text + "\n"}, c.signer)
	if err != nil {
		t.Fatal(err)
	}
	b["checkpoint"] = cp + string(signed[len(text)+2:])
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLedgerVerifyWitnesses: "matrixos ledger verify --witness KEY" (a
// key or a file, repeatable) accepts a bundle whose checkpoint enough of
// those witnesses cosigned (all of them, or --threshold) and refuses one
// short of it; "matrixos ledger key --witness" prints the node's witness
// key.
func TestLedgerVerifyWitnesses(t *testing.T) {
	data := t.TempDir()
	s, token, roomID := ledgerNode(t, data)
	eventID := sendMessage(t, s, token, roomID, "w1")
	bundle := proveCLI(t, data, eventID)
	key := strings.TrimSpace(run(t, "", "ledger", "key", "--data", data))
	own := strings.TrimSpace(run(t, "", "ledger", "key", "--witness", "--data", data))
	if _, err := fnote.NewVerifierForCosignatureV1(own); err != nil || !strings.HasPrefix(own, "localhost/matrixos/witness+") {
		t.Fatalf("ledger key --witness printed %q: %v", own, err)
	}

	w1, w2 := newCosigner(t, "one.example/matrixos/witness"), newCosigner(t, "two.example/matrixos/witness")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	plain := write("plain.json", bundle)
	one := write("one.json", w1.cosign(t, bundle))
	both := write("both.json", w2.cosign(t, w1.cosign(t, bundle)))
	w2File := write("w2.key", []byte(w2.vkey+"\n"))

	out := run(t, "", "ledger", "verify", both, "--key", key, "--witness", w1.vkey, "--witness", w2File)
	if !strings.Contains(out, "cosigned by 2 of the 2 witnesses given") {
		t.Fatalf("verify with both witnesses: %s", out)
	}
	run(t, "", "ledger", "verify", one, "--key", key, "--witness", w1.vkey, "--witness", w2.vkey, "--threshold", "1")
	for _, args := range [][]string{
		{one, "--key", key, "--witness", w1.vkey, "--witness", w2.vkey},
		{plain, "--key", key, "--witness", w1.vkey},
		{both, "--key", key, "--witness", w1.vkey, "--witness", own, "--threshold", "2"},
	} {
		out := fail(t, append([]string{"ledger", "verify"}, args...)...)
		if !strings.Contains(out, "not cosigned by enough of the trusted witnesses") {
			t.Fatalf("verify %v: %s, want a refusal", args, out)
		}
	}
	if out := fail(t, "ledger", "verify", both, "--key", key, "--threshold", "1"); !strings.Contains(out, "--threshold needs --witness") {
		t.Fatalf("--threshold without --witness: %s", out)
	}
}
