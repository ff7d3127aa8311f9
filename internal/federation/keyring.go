package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"
)

// ErrNoKey is wrapped by KeyRing errors when no valid key could be found.
var ErrNoKey = errors.New("no valid verify key")

// DefaultRefetchInterval is how long a KeyRing waits before asking a
// server for keys again after an answer that lacked the key looked for (or
// no answer), so that requests naming made-up key IDs cannot make it fetch
// on every request.
const DefaultRefetchInterval = 10 * time.Second

// KeyRing finds the verify keys of other servers: in the key cache, then
// through the configured notaries, then from the server itself. Every key
// it returns came in a response that named the server asked and carried
// that server's self-signature (and the notary's signature, through a
// notary).
type KeyRing struct {
	store    *keyStore
	client   *federation.Client
	own      *ownKeys
	notaries []string
	log      *slog.Logger

	// RefetchInterval: see DefaultRefetchInterval.
	RefetchInterval time.Duration
	now             func() time.Time

	fetching [64]sync.Mutex // one fetch at a time per server (by hash)

	mu       sync.Mutex
	lastMiss map[string]time.Time
}

// maxMisses bounds the servers whose last miss the KeyRing remembers.
const maxMisses = 10000

func newKeyRing(store *keyStore, client *federation.Client, own *ownKeys, notaries []string, log *slog.Logger) *KeyRing {
	return &KeyRing{
		store: store, client: client, own: own, notaries: notaries, log: log,
		RefetchInterval: DefaultRefetchInterval,
		now:             time.Now,
		lastMiss:        map[string]time.Time{},
	}
}

// VerifyKey returns serverName's key keyID if it was valid at the time at:
// the key a signature made then must verify with.
func (k *KeyRing) VerifyKey(ctx context.Context, serverName string, keyID id.KeyID, at time.Time) (id.SigningKey, error) {
	ts := at.UnixMilli()
	if serverName == k.own.serverName {
		if key, ok := k.own.verifyKey(keyID, ts); ok {
			return key, nil
		}
		return "", fmt.Errorf("%w: this server has no key %s valid at %d", ErrNoKey, keyID, ts)
	}
	if key, ok, err := k.cached(ctx, serverName, keyID, ts); err != nil || ok {
		return key, err
	}
	unlock := k.lockServer(serverName)
	defer unlock()
	// Another request may have fetched it while this one waited.
	if key, ok, err := k.cached(ctx, serverName, keyID, ts); err != nil || ok {
		return key, err
	}
	if !k.mayFetch(serverName) {
		return "", fmt.Errorf("%w: %s of %s valid at %d (asked recently)", ErrNoKey, keyID, serverName, ts)
	}
	var errs []error
	for _, notary := range k.notaries {
		if notary == serverName || notary == k.own.serverName {
			continue
		}
		if err := k.fetchFromNotary(ctx, notary, serverName, keyID, ts); err != nil {
			errs = append(errs, err)
			continue
		}
		if key, ok, err := k.cached(ctx, serverName, keyID, ts); err != nil || ok {
			return key, err
		}
	}
	if err := k.fetchDirect(ctx, serverName); err != nil {
		errs = append(errs, err)
	} else if key, ok, err := k.cached(ctx, serverName, keyID, ts); err != nil || ok {
		return key, err
	}
	k.missed(serverName)
	return "", fmt.Errorf("%w: %s of %s valid at %d: %w", ErrNoKey, keyID, serverName, ts, errors.Join(errs...))
}

func (k *KeyRing) cached(ctx context.Context, serverName string, keyID id.KeyID, ts int64) (id.SigningKey, bool, error) {
	c, ok, err := k.store.load(ctx, serverName, keyID)
	if err != nil || !ok || !c.validAt(ts) {
		return "", false, err
	}
	return c.Key, true, nil
}

// lockServer serialises fetches for a server (and the few that share its
// lock), so concurrent requests wait for one fetch instead of each making
// their own.
func (k *KeyRing) lockServer(serverName string) (unlock func()) {
	h := fnv.New32a()
	h.Write([]byte(serverName))
	m := &k.fetching[h.Sum32()%uint32(len(k.fetching))]
	m.Lock()
	return m.Unlock
}

func (k *KeyRing) mayFetch(serverName string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	last, ok := k.lastMiss[serverName]
	return !ok || k.now().Sub(last) >= k.RefetchInterval
}

func (k *KeyRing) missed(serverName string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if len(k.lastMiss) >= maxMisses {
		for name, t := range k.lastMiss {
			if now.Sub(t) >= k.RefetchInterval {
				delete(k.lastMiss, name)
			}
		}
	}
	if len(k.lastMiss) < maxMisses {
		k.lastMiss[serverName] = now
	}
}

// fetchDirect asks serverName for its keys (GET /_matrix/key/v2/server),
// checks the answer and caches it. mautrix refuses an answer for another
// server (federation.ErrMismatchingServerName); parseKeyResponse checks
// that again with the rest.
func (k *KeyRing) fetchDirect(ctx context.Context, serverName string) error {
	resp, err := k.client.ServerKeys(ctx, serverName)
	if err != nil {
		return fmt.Errorf("fetch keys of %s: %w", serverName, err)
	}
	r, err := parseKeyResponse(resp.Raw, serverName)
	if err != nil {
		return err
	}
	return k.store.store(ctx, r, k.now())
}

// queryRequest is the body of POST /_matrix/key/v2/query.
type queryRequest struct {
	ServerKeys map[string]map[id.KeyID]queryCriteria `json:"server_keys"`
}

type queryCriteria struct {
	MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts,omitempty"`
}

// queryResponse is the answer of both notary endpoints.
type queryResponse struct {
	ServerKeys []json.RawMessage `json:"server_keys"`
}

// fetchFromNotary asks a notary for serverName's key, checks every
// response it returns for serverName (its self-signatures and the notary's
// signature) and caches them.
func (k *KeyRing) fetchFromNotary(ctx context.Context, notary, serverName string, keyID id.KeyID, ts int64) error {
	req := queryRequest{ServerKeys: map[string]map[id.KeyID]queryCriteria{serverName: {keyID: {MinimumValidUntilTS: &ts}}}}
	var resp queryResponse
	_, _, err := k.client.MakeFullRequest(ctx, federation.RequestParams{
		ServerName:   notary,
		Method:       http.MethodPost,
		Path:         federation.KeyURLPath{"v2", "query"},
		RequestJSON:  req,
		ResponseJSON: &resp,
	})
	if err != nil {
		return fmt.Errorf("query notary %s for %s: %w", notary, serverName, err)
	}
	var errs []error
	for _, raw := range resp.ServerKeys {
		r, err := parseKeyResponse(raw, serverName)
		if err != nil {
			errs = append(errs, fmt.Errorf("through notary %s: %w", notary, err))
			continue
		}
		if err := k.checkNotarySignature(ctx, notary, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := k.store.store(ctx, r, k.now()); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// notaryKey returns a notary's current key, from the cache or fetched
// from the notary itself (never through another notary). It takes no
// fetch lock: it runs under the lock of the server asked about, which may
// share the notary's.
func (k *KeyRing) notaryKey(ctx context.Context, notary string, keyID id.KeyID) (id.SigningKey, error) {
	ts := k.now().UnixMilli()
	if key, ok, err := k.cached(ctx, notary, keyID, ts); err != nil || ok {
		return key, err
	}
	if err := k.fetchDirect(ctx, notary); err != nil {
		return "", err
	}
	if key, ok, err := k.cached(ctx, notary, keyID, ts); err != nil || ok {
		return key, err
	}
	return "", fmt.Errorf("%w: notary %s has no key %s", ErrNoKey, notary, keyID)
}

// checkNotarySignature checks that the notary signed raw with one of its
// keys, fetched from the notary itself.
func (k *KeyRing) checkNotarySignature(ctx context.Context, notary string, raw json.RawMessage) error {
	var signed struct {
		Signatures map[string]map[id.KeyID]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &signed); err != nil {
		return fmt.Errorf("notary %s: %w", notary, err)
	}
	for keyID := range signed.Signatures[notary] {
		key, err := k.notaryKey(ctx, notary, keyID)
		if err != nil {
			continue
		}
		if signutil.VerifyJSON(notary, keyID, key, raw) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: notary %s did not sign its answer with a key of its own", errBadKeyResponse, notary)
}
