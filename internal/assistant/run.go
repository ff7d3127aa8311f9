//go:build goolm

package assistant

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
)

// pickleKeyFile holds the key that encrypts the crypto store's secrets.
const pickleKeyFile = "pickle.key"

// Run runs the assistant with login until ctx ends (it then returns nil
// once its answers in flight are sent or cut short) or it cannot start.
func (a *Assistant) Run(ctx context.Context, login Login) error {
	if err := os.MkdirAll(a.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("assistant: %w", err)
	}
	os.Chmod(a.opts.Dir, 0o700)
	pickleKey, err := loadOrCreateKey(filepath.Join(a.opts.Dir, pickleKeyFile))
	if err != nil {
		return err
	}
	db, err := openStore(filepath.Join(a.opts.Dir, StoreFile))
	if err != nil {
		return err
	}
	client, err := mautrix.NewClient(login.HomeserverURL, login.UserID, login.AccessToken)
	if err != nil {
		db.Close()
		return fmt.Errorf("assistant: client: %w", err)
	}
	client.DeviceID = login.DeviceID
	client.Client = &http.Client{Timeout: 2 * time.Minute}
	client.Log = zerolog.Nop()
	helper, err := cryptohelper.NewCryptoHelper(client, pickleKey, db)
	if err != nil {
		db.Close()
		return fmt.Errorf("assistant: crypto: %w", err)
	}
	if err := helper.Init(ctx); err != nil {
		helper.Close()
		return fmt.Errorf("assistant: crypto: %w", err)
	}
	client.Crypto = helper
	defer helper.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := openStoreTables(ctx, db.RawDB)
	if err != nil {
		return err
	}
	s := &session{a: a, client: client, ctx: runCtx, store: st}
	syncer := client.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.StateMember, s.onMember)
	syncer.OnEventType(event.EventMessage, s.onMessage)
	syncer.OnEventType(event.EventRedaction, s.onRedaction)
	syncer.OnEventType(event.EphemeralEventReceipt, s.onReceipt)
	a.opts.Log.Info("assistant: running", "user_id", login.UserID, "device_id", login.DeviceID)
	err = client.SyncWithContext(runCtx)
	cancel()
	a.running.Wait()
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return fmt.Errorf("assistant: sync: %w", err)
	}
	return nil
}

// openStore opens (creating it, 0600) the assistant's SQLite database
// with foreign keys on and write-ahead logging. Its write-ahead log and
// shared-memory index are 0600 too, whatever the umask: the log takes
// the database file's mode (modeof), the index is created first.
func openStore(path string) (*dbutil.Database, error) {
	for _, p := range []string{path, path + "-shm"} {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("assistant store: %w", err)
		}
		f.Close()
	}
	// Files an older version made readable by others are made private.
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("assistant store: %w", err)
		}
	}
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=foreign_keys(1)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(10000)" +
		"&modeof=" + url.QueryEscape(path)
	raw, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("assistant store: %w", err)
	}
	raw.SetMaxOpenConns(4)
	db, err := dbutil.NewWithDB(raw, "sqlite3")
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("assistant store: %w", err)
	}
	db.Owner = "matrixos-assistant"
	return db, nil
}

// loadOrCreateKey reads the 32-byte key at path, creating it (0600) on
// first start.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) == 32 {
		return key, nil
	}
	if err == nil {
		return nil, fmt.Errorf("assistant: %s is not a 32-byte key", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("assistant: %w", err)
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("assistant: %w", err)
	}
	return key, nil
}
