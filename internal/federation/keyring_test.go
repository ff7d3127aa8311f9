package federation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/util/jsontime"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/storage"
)

// stubKeyRing returns a KeyRing (of me.example, asking notaries) whose
// every request goes to one stub server, which answers with what serve
// returns for the request, and counts the requests.
func stubKeyRing(t *testing.T, serve func(r *http.Request) []byte, notaries ...string) (*KeyRing, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(serve(r))
	}))
	t.Cleanup(srv.Close)
	tr := tlsTransport(t, srv)
	tr.resolve = func(ctx context.Context, name string) (*federation.ResolvedServerName, error) {
		return &federation.ResolvedServerName{ServerName: name, HostHeader: "127.0.0.1", IPPort: []string{srv.Listener.Addr().String()}}, nil
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := testDB(t, log)
	me := federation.GenerateSigningKey()
	own := &ownKeys{serverName: "me.example", key: me}
	return newKeyRing(newKeyStore(db), newClient("me.example", me, tr, "test"), own, notaries, log), &hits
}

// TestKeyRingChecksTheServer: a key response for another server than the
// one asked is refused (mautrix v0.33's check and ours); one for the
// server asked is taken. After a miss the server is not asked again within
// RefetchInterval.
func TestKeyRingChecksTheServer(t *testing.T) {
	ctx := context.Background()
	key := federation.GenerateSigningKey()
	name := "other.example"
	k, hits := stubKeyRing(t, func(*http.Request) []byte { return ownResponse(t, name, key) })

	_, err := k.VerifyKey(ctx, "good.example", key.ID, time.Now())
	if !errors.Is(err, ErrNoKey) || !errors.Is(err, federation.ErrMismatchingServerName) {
		t.Fatalf("keys of other.example taken for good.example: %v", err)
	}
	if _, err := k.VerifyKey(ctx, "good.example", key.ID, time.Now()); !errors.Is(err, ErrNoKey) || hits.Load() != 1 {
		t.Fatalf("asked again right after a miss: %d requests, %v", hits.Load(), err)
	}

	name = "good.example"
	k.now = func() time.Time { return time.Now().Add(DefaultRefetchInterval) }
	got, err := k.VerifyKey(ctx, "good.example", key.ID, time.Now())
	if err != nil || got != key.Pub || hits.Load() != 2 {
		t.Fatalf("keys of good.example: %q, %v (%d requests)", got, err, hits.Load())
	}
	// Cached now: no third request.
	if _, err := k.VerifyKey(ctx, "good.example", key.ID, time.Now()); err != nil || hits.Load() != 2 {
		t.Fatalf("cached key: %v (%d requests)", err, hits.Load())
	}
}

// TestKeyRingThroughNotarySharingALock: fetching a server's key through a
// notary whose name shares the server's fetch lock finishes (checking the
// notary's signature takes no fetch lock of its own).
func TestKeyRingThroughNotarySharingALock(t *testing.T) {
	const notary = "notary.example"
	var server string
	shard := func(name string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(name))
		return h.Sum32() % 64
	}
	for i := 0; server == ""; i++ {
		if name := fmt.Sprintf("s%d.example", i); shard(name) == shard(notary) {
			server = name
		}
	}
	notaryKey, serverKey := federation.GenerateSigningKey(), federation.GenerateSigningKey()
	k, _ := stubKeyRing(t, func(r *http.Request) []byte {
		if r.Method == "POST" { // the notary's /_matrix/key/v2/query
			signed, err := addSignature(ownResponse(t, server, serverKey), notary, notaryKey)
			if err != nil {
				t.Error(err)
			}
			return []byte(`{"server_keys":[` + string(signed) + `]}`)
		}
		return ownResponse(t, notary, notaryKey) // the notary's own keys
	}, notary)
	done := make(chan error, 1)
	go func() {
		got, err := k.VerifyKey(context.Background(), server, serverKey.ID, time.Now())
		if err == nil && got != serverKey.Pub {
			err = fmt.Errorf("got key %q", got)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("fetch through a notary sharing the server's lock hangs")
	}
}

// testDB returns a migrated SQLite database, closed when the test ends.
func testDB(t *testing.T, log *slog.Logger) *storage.DB {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "t.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	return db
}

// tlsTransport returns a transport that trusts srv's certificate and may
// reach loopback addresses.
func tlsTransport(t *testing.T, srv *httptest.Server) *transport {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	guard, err := netguard.New([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(guard, roots, nil)
	return tr
}

// TestKeyStoreKeepsKeysInMemory: a key read once is answered from memory
// (the database row is gone, the key is still found), and storing a newer
// response for the server makes the next read take the stored one.
func TestKeyStoreKeepsKeysInMemory(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := testDB(t, log)
	s := newKeyStore(db)
	response := func(key id.SigningKey, validUntil time.Time) *keyResponse {
		return &keyResponse{
			ServerName:   "other.example",
			ValidUntilTS: jsontime.UM(validUntil),
			VerifyKeys:   map[id.KeyID]federation.ServerVerifyKey{"ed25519:k": {Key: key}},
			Raw:          json.RawMessage(`{}`),
		}
	}
	now := time.Now()
	if err := s.store(ctx, response("first", now.Add(time.Hour)), now); err != nil {
		t.Fatal(err)
	}
	if k, ok, err := s.load(ctx, "other.example", "ed25519:k"); err != nil || !ok || k.Key != "first" {
		t.Fatalf("first load: %+v %v %v", k, ok, err)
	}
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM federation_server_keys")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if k, ok, err := s.load(ctx, "other.example", "ed25519:k"); err != nil || !ok || k.Key != "first" {
		t.Fatalf("the key read before was not kept in memory: %+v %v %v", k, ok, err)
	}
	if err := s.store(ctx, response("second", now.Add(2*time.Hour)), now); err != nil {
		t.Fatal(err)
	}
	if k, ok, err := s.load(ctx, "other.example", "ed25519:k"); err != nil || !ok || k.Key != "second" {
		t.Fatalf("after storing a newer response: %+v %v %v, want the key second", k, ok, err)
	}
}
