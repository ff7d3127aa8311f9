package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/federation"
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
		// Written whole or not at all: kill -9 half way must not leave an
		// empty key that stops every later start.
		if err := writeFileAtomic(path, []byte(line), false); err != nil {
			return "", nil, fmt.Errorf("create signing key: %w", err)
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
	return accounts.RandomString("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", n)
}

// RotateKey replaces the server's signing key with a new one. The old key
// is recorded as an old verify key, expired now, so that the node keeps
// serving it in old_verify_keys and others can still check what it signed;
// the node signs with the new key from its next start. It returns the old
// and the new key IDs.
func RotateKey(ctx context.Context, cfg config.Config, log *slog.Logger) (oldID, newID id.KeyID, err error) {
	oldID, oldKey, err := LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return "", "", err
	}
	db, err := OpenDB(ctx, cfg, log)
	if err != nil {
		return "", "", err
	}
	defer db.Close()
	newID = id.KeyID("ed25519:a_" + randomAlnum(4))
	for newID == oldID {
		newID = id.KeyID("ed25519:a_" + randomAlnum(4))
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return "", "", fmt.Errorf("generate signing key: %w", err)
	}
	old := federation.OldKey{
		ID:        oldID,
		Key:       id.SigningKey(base64.RawStdEncoding.EncodeToString(oldKey.Public().(ed25519.PublicKey))),
		ExpiredTS: time.Now().UnixMilli(),
	}
	// Record the old key first: if writing the new one fails, the old key
	// stays current and is merely listed twice.
	if err := federation.RecordOldKey(ctx, db, old); err != nil {
		return "", "", err
	}
	_, version, _ := strings.Cut(string(newID), ":")
	line := fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(seed))
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, SigningKeyFile), []byte(line), true); err != nil {
		return "", "", fmt.Errorf("write new signing key: %w", err)
	}
	return oldID, newID, nil
}

// writeFileAtomic writes data (mode 0600) to path through a synced
// temporary file, so a crash leaves the old file or the new one, never a
// part: renamed over path with replace, else linked to it, which fails
// when path exists.
func writeFileAtomic(path string, data []byte, replace bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	cerr := f.Chmod(0o600)
	_, werr := f.Write(data)
	serr := f.Sync()
	if err := errors.Join(cerr, werr, serr, f.Close()); err != nil {
		return err
	}
	if replace {
		err = os.Rename(f.Name(), path)
	} else {
		err = os.Link(f.Name(), path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close()) // the new name, on disk
}
