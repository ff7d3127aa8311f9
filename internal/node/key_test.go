package node

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestSigningKey(t *testing.T) {
	valid := regexp.MustCompile(`^ed25519:a_[a-zA-Z0-9]{4}$`)
	for range 200 { // the key ID is random: try many
		dir := t.TempDir()
		keyID, key, err := LoadOrCreateKey(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !valid.MatchString(string(keyID)) {
			t.Fatalf("key ID %q", keyID)
		}
		st, err := os.Stat(filepath.Join(dir, SigningKeyFile))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
		}
		again, key2, err := LoadOrCreateKey(dir)
		if err != nil || again != keyID || !key.Equal(key2) {
			t.Fatalf("reload gave %q, %v", again, err)
		}
	}
	dir := t.TempDir()
	LoadOrCreateKey(dir)
	os.Chmod(filepath.Join(dir, SigningKeyFile), 0o644)
	if _, _, err := LoadOrCreateKey(dir); err == nil {
		t.Fatal("a key readable by others must be refused")
	}
}
