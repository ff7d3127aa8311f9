package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"maunium.net/go/mautrix/id"
)

// SigningKeyFile is the signing key's file name in the data directory.
const SigningKeyFile = "signing.key"

// LoadOrCreateKey reads the server's ed25519 signing key, creating it (mode
// 0600) on first start. The file holds one line: "ed25519 <key id> <seed>"
// with the seed in unpadded base64, the format Synapse uses too.
func LoadOrCreateKey(dataDir string) (id.KeyID, ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, SigningKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return "", nil, fmt.Errorf("generate signing key: %w", err)
		}
		keyID := "a_" + randomAlnum(4)
		line := fmt.Sprintf("ed25519 %s %s\n", keyID, base64.RawStdEncoding.EncodeToString(seed))
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return "", nil, fmt.Errorf("create data directory: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", nil, fmt.Errorf("create signing key: %w", err)
		}
		if _, err := f.WriteString(line); err != nil {
			f.Close()
			return "", nil, fmt.Errorf("write signing key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return "", nil, err
		}
		if err := f.Close(); err != nil {
			return "", nil, err
		}
		b = []byte(line)
	} else if err != nil {
		return "", nil, fmt.Errorf("read signing key: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return "", nil, fmt.Errorf("signing key %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	fields := strings.Fields(string(b))
	if len(fields) != 3 || fields[0] != "ed25519" {
		return "", nil, fmt.Errorf("signing key %s: unrecognised format", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
	if err != nil || len(seed) != ed25519.SeedSize {
		return "", nil, fmt.Errorf("signing key %s: bad seed", path)
	}
	return id.KeyID("ed25519:" + fields[1]), ed25519.NewKeyFromSeed(seed), nil
}

// randomAlnum returns n random characters from [a-zA-Z0-9] (key IDs allow
// only those and '_').
func randomAlnum(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}
