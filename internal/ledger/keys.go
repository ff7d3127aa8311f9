package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/transparency-dev/tessera/client"

	"github.com/matrixos/matrixos/internal/follower"
	"github.com/matrixos/matrixos/internal/storage"
)

// KeysTilesPrefix is where the identity keys log is served as C2SP
// tlog-tiles.
const KeysTilesPrefix = "/_matrixos/ledger/v1/keys/"

// keysLog names the keys log's row in ledger_marks.
const keysLog = "keys"

// KeysOrigin is the origin line of the identity keys log's checkpoints on
// the server serverName.
func KeysOrigin(serverName string) string {
	return serverName + "/matrixos/ledger/keys"
}

// KeyEntry is one leaf of the identity keys log: the public keys of one of
// a local user's devices ("device:<id>") or cross-signing keys
// ("cross_signing:<master|self_signing|user_signing>") from that point on;
// empty public keys record that the key is gone.
type KeyEntry struct {
	Key        string `json:"key"`
	PublicKeys string `json:"public_keys"`
	UserID     string `json:"user_id"`
}

// Marshal returns the entry's bytes as stored in the log.
func (e KeyEntry) Marshal() []byte {
	b, _ := json.Marshal(e) // strings only: cannot fail
	return b
}

// ParseKeyEntry reads a leaf of the identity keys log.
func ParseKeyEntry(b []byte) (KeyEntry, error) {
	var e KeyEntry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return KeyEntry{}, fmt.Errorf("ledger key entry: %w", err)
	}
	if e.UserID == "" || e.Key == "" || !bytes.Equal(e.Marshal(), b) {
		return KeyEntry{}, errors.New("ledger key entry: not in canonical form")
	}
	return e, nil
}

// KeysLog is the identity keys log: each change of a local user's device
// keys or cross-signing keys, so that a key the server substituted shows.
// Its follower reads the device list changes (e2e_device_changes) after
// its mark once a second, compares each changed user's keys with the last
// ones logged (ledger_keys) and appends the differences; the new state and
// mark are recorded in one transaction after the append. Entries a crash
// left in the log unrecorded are read back into ledger_keys on start, so
// they are not appended again.
type KeysLog struct {
	db         *storage.DB
	log        *slog.Logger
	dir        string
	serverName string
	t          *tesseraLog
	// PublicKey is the log's note verifier key.
	PublicKey string

	mu   sync.Mutex // one Step at a time
	mark mark       // guarded by mu

	follower *follower.Follower
}

// OpenKeys opens (or creates) the identity keys log in dir.
func OpenKeys(ctx context.Context, db *storage.DB, log *slog.Logger, dir, serverName string, key ed25519.PrivateKey) (*KeysLog, error) {
	t, err := openTessera(ctx, log, dir, KeysOrigin(serverName), key)
	if err != nil {
		return nil, err
	}
	k := &KeysLog{db: db, log: log, dir: dir, serverName: serverName, t: t, PublicKey: t.vkey}
	k.follower = follower.New("ledger keys", followInterval, log, k.Step)
	err = db.QueryRow(ctx, "SELECT pos, size FROM ledger_marks WHERE log = $1", keysLog).Scan(&k.mark.pos, &k.mark.size)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.close(ctx)
		return nil, fmt.Errorf("read ledger keys mark: %w", err)
	}
	return k, nil
}

// Start follows the key changes until Close.
func (k *KeysLog) Start() { k.follower.Start() }

// Close stops the follower and Tessera.
func (k *KeysLog) Close(ctx context.Context) error {
	k.follower.Close()
	return k.t.close(ctx)
}

// Routes serves the log read-only as tlog-tiles.
func (k *KeysLog) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+KeysTilesPrefix+"{path...}", serveTiles(k.dir, k.PublicKey, k.log))
}

// Size returns the number of entries integrated into the log.
func (k *KeysLog) Size(ctx context.Context) (uint64, error) {
	return k.t.reader.IntegratedSize(ctx)
}

// Entries reads the entries [0, size) of the log.
func (k *KeysLog) Entries(ctx context.Context, size uint64) ([]KeyEntry, error) {
	return readKeyEntries(ctx, k.dir, 0, size, size)
}

// Step appends the key changes of the local users whose devices or
// cross-signing keys changed after the mark (up to 1,000 changes) and
// reports whether more may be waiting. The follower calls it; tests call
// it to catch up at once.
func (k *KeysLog) Step(ctx context.Context) (more bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.recover(ctx); err != nil {
		return false, err
	}
	visible := k.db.Visible()
	if visible <= k.mark.pos {
		return false, nil
	}
	users, last, full, err := k.changedUsers(ctx, k.mark.pos, visible)
	if err != nil {
		return false, err
	}
	if !full {
		last = visible
	}
	var changes []KeyEntry
	for _, u := range users {
		c, err := k.diff(ctx, u)
		if err != nil {
			return false, err
		}
		changes = append(changes, c...)
	}
	next := mark{pos: last, size: k.mark.size}
	if len(changes) == 0 {
		k.mark = next
		return full, nil
	}
	leaves := make([][]byte, len(changes))
	for i, c := range changes {
		leaves[i] = c.Marshal()
	}
	idx, err := appendData(ctx, k.t.appender, leaves)
	if err != nil {
		return false, err
	}
	next.size = idx[len(idx)-1] + 1
	if err := k.record(ctx, changes, next); err != nil {
		return false, err
	}
	return full, nil
}

// changedUsers returns the local users with a device list change after
// pos, in the order of their first change.
func (k *KeysLog) changedUsers(ctx context.Context, pos, visible int64) (users []string, last int64, full bool, err error) {
	rows, err := k.db.Query(ctx, `SELECT pos, user_id FROM e2e_device_changes WHERE pos > $1 AND pos <= $2 AND viewer = ''
		ORDER BY pos LIMIT 1000`, pos, visible)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read key changes for the ledger: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var user string
		if err := rows.Scan(&last, &user); err != nil {
			return nil, 0, false, fmt.Errorf("read key changes for the ledger: %w", err)
		}
		n++
		if strings.HasSuffix(user, ":"+k.serverName) && !slices.Contains(users, user) {
			users = append(users, user)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("read key changes for the ledger: %w", err)
	}
	return users, last, n == 1000, nil
}

// diff compares a user's keys now with the last ones logged.
func (k *KeysLog) diff(ctx context.Context, user string) ([]KeyEntry, error) {
	now, err := k.currentKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	logged, err := k.loggedKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	var out []KeyEntry
	for _, key := range slices.Sorted(mapKeys(now, logged)) {
		if now[key] != logged[key] {
			out = append(out, KeyEntry{UserID: user, Key: key, PublicKeys: now[key]})
		}
	}
	return out, nil
}

func mapKeys(maps ...map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range maps {
			for k, v := range m {
				if v == "" || seen[k] {
					continue
				}
				seen[k] = true
				if !yield(k) {
					return
				}
			}
		}
	}
}

// currentKeys reads a user's device and cross-signing public keys.
func (k *KeysLog) currentKeys(ctx context.Context, user string) (map[string]string, error) {
	out := map[string]string{}
	rows, err := k.db.Query(ctx, "SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = $1", user)
	if err != nil {
		return nil, fmt.Errorf("read device keys of %s: %w", user, err)
	}
	defer rows.Close()
	for rows.Next() {
		var device, raw string
		if err := rows.Scan(&device, &raw); err != nil {
			return nil, err
		}
		out["device:"+device] = publicKeys(gjson.Get(raw, "keys"))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	rows, err = k.db.Query(ctx, "SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1", user)
	if err != nil {
		return nil, fmt.Errorf("read cross-signing keys of %s: %w", user, err)
	}
	defer rows.Close()
	for rows.Next() {
		var keyType, raw string
		if err := rows.Scan(&keyType, &raw); err != nil {
			return nil, err
		}
		out["cross_signing:"+keyType] = publicKeys(gjson.Get(raw, "keys"))
	}
	return out, rows.Err()
}

// publicKeys writes a keys object as "<key id>=<key>" pairs, sorted and
// separated by spaces.
func publicKeys(keys gjson.Result) string {
	var pairs []string
	keys.ForEach(func(id, key gjson.Result) bool {
		pairs = append(pairs, id.String()+"="+key.String())
		return true
	})
	slices.Sort(pairs)
	return strings.Join(pairs, " ")
}

// loggedKeys reads the user's keys as last logged.
func (k *KeysLog) loggedKeys(ctx context.Context, user string) (map[string]string, error) {
	rows, err := k.db.Query(ctx, "SELECT key_id, public_keys FROM ledger_keys WHERE user_id = $1", user)
	if err != nil {
		return nil, fmt.Errorf("read logged keys of %s: %w", user, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var key, pub string
		if err := rows.Scan(&key, &pub); err != nil {
			return nil, err
		}
		out[key] = pub
	}
	return out, rows.Err()
}

// record stores the logged keys and the new mark in one transaction.
func (k *KeysLog) record(ctx context.Context, entries []KeyEntry, next mark) error {
	err := k.db.Write(ctx, func(tx *storage.Tx) error {
		for _, e := range entries {
			if _, err := tx.Exec(ctx, `INSERT INTO ledger_keys (user_id, key_id, public_keys) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, key_id) DO UPDATE SET public_keys = excluded.public_keys`, e.UserID, e.Key, e.PublicKeys); err != nil {
				return fmt.Errorf("record logged key: %w", err)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO ledger_marks (log, pos, size) VALUES ($1, $2, $3)
			ON CONFLICT (log) DO UPDATE SET pos = excluded.pos, size = excluded.size`, keysLog, next.pos, int64(next.size))
		return err
	})
	if err != nil {
		return fmt.Errorf("record ledger keys: %w", err)
	}
	k.mark = next
	return nil
}

// recover records the entries the log holds beyond the recorded size (a
// crash came between their append and their record) as logged, so the
// next diff does not append them again.
func (k *KeysLog) recover(ctx context.Context) error {
	n, err := k.t.reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("ledger keys size: %w", err)
	}
	switch {
	case n < k.mark.size:
		return fmt.Errorf("ledger %s holds %d entries but %d were recorded: entries were lost", k.dir, n, k.mark.size)
	case n == k.mark.size:
		return nil
	}
	entries, err := readKeyEntries(ctx, k.dir, k.mark.size, n, n)
	if err != nil {
		return err
	}
	k.log.Info("ledger: key entries appended before the last stop are recorded", "from", k.mark.size, "to", n)
	return k.record(ctx, entries, mark{pos: k.mark.pos, size: n})
}

// readKeyEntries reads the entries [from, to) of the keys log in dir of
// size logSize.
func readKeyEntries(ctx context.Context, dir string, from, to, logSize uint64) ([]KeyEntry, error) {
	fetch := client.FileFetcher{Root: dir}
	var out []KeyEntry
	for i := from; i < to; i++ {
		raw, err := readEntryBytes(ctx, fetch, i, logSize)
		if err != nil {
			return nil, err
		}
		e, err := ParseKeyEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("ledger key entry %d: %w", i, err)
		}
		out = append(out, e)
	}
	return out, nil
}
