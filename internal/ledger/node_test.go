package ledger_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/tlog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

var ledgerType = event.Type{Type: ledger.StateType, Class: event.StateEventType}

func proofPath(room id.RoomID, ev id.EventID) string {
	p := strings.Replace(ledger.ProofPath, "{roomId}", url.PathEscape(string(room)), 1)
	return strings.Replace(p, "{eventId}", url.PathEscape(string(ev)), 1)
}

// catchUp has the follower append everything committed so far.
func catchUp(t testing.TB, n *testnode.Node) {
	t.Helper()
	for {
		more, err := n.Ledger.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
	}
}

// wantLogged fetches the event's proof bundle as c, checks it with Verify
// against the node's key and checks that its entry is the event's.
func wantLogged(t testing.TB, n *testnode.Node, c *mautrix.Client, room id.RoomID, evID id.EventID) *ledger.Verified {
	t.Helper()
	r := testnode.Call(t, c, "GET", proofPath(room, evID), nil)
	// The endpoint waits 3 s for a checkpoint; on a loaded machine give
	// it a few more tries (TestCatchUpWithinASecond times the follower).
	for try := 0; r.Status == http.StatusNotFound && try < 3; try++ {
		r = testnode.Call(t, c, "GET", proofPath(room, evID), nil)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("proof of %s: %d %s", evID, r.Status, r.Body)
	}
	v, err := ledger.Verify(r.Body, n.Ledger.PublicKey)
	if err != nil {
		t.Fatalf("proof of %s does not verify: %v", evID, err)
	}
	ev, err := n.Rooms.Event(context.Background(), evID)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Entry{RoomID: string(room), EventID: string(evID), ContentHash: gjson.GetBytes(ev.JSON, "hashes.sha256").String()}
	if v.Entry != want || want.ContentHash == "" {
		t.Fatalf("proved entry %+v, want %+v", v.Entry, want)
	}
	return v
}

// wantNotLogged checks that the follower, caught up, did not log evID.
func wantNotLogged(t testing.TB, n *testnode.Node, c *mautrix.Client, room id.RoomID, evID id.EventID) {
	t.Helper()
	catchUp(t, n)
	if _, err := n.Ledger.Prover().Index(context.Background(), string(evID)); !errors.Is(err, ledger.ErrNotLogged) {
		t.Fatalf("%s: %v, want it not logged", evID, err)
	}
	testnode.Call(t, c, "GET", proofPath(room, evID), nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
}

// TestRoomsWithTheLedger: only the events of rooms with the ledger on are
// logged, from the event that turns it on to the one that turns it off;
// a member gets an event's proof bundle, which verifies, and someone who
// cannot see the event gets 404.
func TestRoomsWithTheLedger(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		alice, bob := n.Register("alice"), n.Register("bob")
		plain := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		logged := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
		before := testnode.SendText(t, alice, logged, "before the ledger")
		plainMsg := testnode.SendText(t, alice, plain, "never logged")
		on := testnode.SendState(t, alice, logged, ledgerType, "", map[string]any{"enabled": true})
		after := testnode.SendText(t, alice, logged, "after the ledger")

		first := wantLogged(t, n, alice, logged, on)
		second := wantLogged(t, n, alice, logged, after)
		if second.Index != first.Index+1 {
			t.Fatalf("indexes %d then %d, want consecutive", first.Index, second.Index)
		}
		wantNotLogged(t, n, alice, logged, before)
		wantNotLogged(t, n, alice, plain, plainMsg)
		// bob is not in the room: the event is as unknown to him as one
		// that does not exist.
		testnode.Call(t, bob, "GET", proofPath(logged, after), nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
		testnode.Call(t, n.Client(), "GET", proofPath(logged, after), nil).Want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")

		off := testnode.SendState(t, alice, logged, ledgerType, "", map[string]any{"enabled": false})
		wantLogged(t, n, alice, logged, off)
		afterOff := testnode.SendText(t, alice, logged, "after the ledger was turned off")
		wantNotLogged(t, n, alice, logged, afterOff)

		// A restart neither loses nor repeats anything.
		n = n.Restart()
		alice.HomeserverURL, _ = url.Parse(n.URL)
		again := testnode.SendState(t, alice, logged, ledgerType, "", map[string]any{"enabled": true})
		v := wantLogged(t, n, alice, logged, again)
		if v.Index != 3 {
			t.Fatalf("after a restart the next entry is at %d, want 3", v.Index)
		}
		size, err := n.Ledger.Size(context.Background())
		if err != nil || size != 4 {
			t.Fatalf("log size %d (%v), want 4", size, err)
		}
	})
}

// TestLedgerAll: with ledger: all, every room is logged.
func TestLedgerAll(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.Ledger = "all" })
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	msg := testnode.SendText(t, alice, room, "logged without asking")
	v := wantLogged(t, n, alice, room, msg)
	if v.Index == 0 {
		t.Fatal("the room's earlier events (its creation) are not logged before the message")
	}
}

// TestTilesServed: a standard tile client (Tessera's HTTP fetcher) reads
// the log over HTTP: the checkpoint, which verifies with the key the node
// serves, entry bundles and tiles from which it builds an inclusion proof
// that golang.org/x/mod/sumdb/tlog accepts. Tiles are cacheable forever,
// the checkpoint is not, and other paths are not served. With
// ledger_public on, it needs no access token.
func TestTilesServed(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.Ledger = "all"; c.LedgerPublic = true })
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	msg := testnode.SendText(t, alice, room, "hello")
	v := wantLogged(t, n, alice, room, msg)

	base, _ := url.Parse(n.URL + ledger.TilesPrefix)
	fetcher, err := client.NewHTTPFetcher(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := n.Do(t, "GET", ledger.TilesPrefix+"key", "", nil, testnode.NoSpecCheck())
	if strings.TrimSpace(string(key.Body)) != n.Ledger.PublicKey {
		t.Fatalf("served key %q, want %q", key.Body, n.Ledger.PublicKey)
	}
	raw, err := fetcher.ReadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree := independentCheckpoint(t, raw, n.Ledger.PublicKey)
	if tree.N <= int64(v.Index) {
		t.Fatalf("served checkpoint of %d entries does not cover %d", tree.N, v.Index)
	}
	bundle, err := client.GetEntryBundle(ctx, fetcher.ReadEntryBundle, v.Index/256, uint64(tree.N))
	if err != nil {
		t.Fatal(err)
	}
	entry := bundle.Entries[v.Index%256]
	if got, _ := ledger.ParseEntry(entry); got != v.Entry {
		t.Fatalf("served entry %s, want %+v", entry, v.Entry)
	}
	pb, err := client.NewProofBuilder(ctx, uint64(tree.N), fetcher.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pb.InclusionProof(ctx, v.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(hashes(p), tree.N, tree.Hash, int64(v.Index), tlog.RecordHash(entry)); err != nil {
		t.Fatalf("inclusion proof from the served tiles: %v", err)
	}

	cp := n.Do(t, "GET", ledger.TilesPrefix+"checkpoint", "", nil, testnode.NoSpecCheck())
	if cp.Status != 200 || cp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("checkpoint: %d, Cache-Control %q", cp.Status, cp.Header.Get("Cache-Control"))
	}
	tile := n.Do(t, "GET", ledger.TilesPrefix+"tile/0/000.p/"+strconv.FormatInt(tree.N, 10), "", nil, testnode.NoSpecCheck())
	if tile.Status != 200 || !strings.Contains(tile.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("tile: %d, Cache-Control %q", tile.Status, tile.Header.Get("Cache-Control"))
	}
	for _, p := range []string{".state/treeState", "tile/0/000.p/x", "tile/0/0", "tile/entries/001.p/300", "signing.key"} {
		n.Do(t, "GET", ledger.TilesPrefix+p, "", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	}
}

// TestCatchUpWithinASecond: an event is in a signed checkpoint within a
// second of its send's answer, after a burst as after a lone message.
func TestCatchUpWithinASecond(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.Ledger = "all" })
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	for _, burst := range []int{1, 200} {
		var last id.EventID
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range burst {
			wg.Go(func() {
				ev := testnode.SendText(t, alice, room, fmt.Sprint("burst ", i))
				mu.Lock()
				last = ev
				mu.Unlock()
			})
		}
		wg.Wait()
		sent := time.Now()
		for {
			_, err := n.Ledger.Prover().Prove(context.Background(), string(last))
			if err == nil {
				break
			}
			if !errors.Is(err, ledger.ErrNotLogged) && !errors.Is(err, ledger.ErrNotCheckpointed) {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(sent)
		t.Logf("burst of %d: the last event answered was in a checkpoint %v later", burst, took)
		if took > time.Second {
			t.Errorf("burst of %d: the log caught up after %v, want within a second", burst, took)
		}
	}
}

// TestMarkKeptAtShutdown: the follower's mark, moved in memory past the
// events of rooms without the ledger, is recorded when the node stops, so
// the next start does not read those events again.
func TestMarkKeptAtShutdown(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	last := testnode.SendText(t, alice, room, "not logged")
	ev, err := n.Rooms.Event(context.Background(), last)
	if err != nil {
		t.Fatal(err)
	}
	catchUp(t, n)
	n = n.Restart()
	var pos int64
	if err := n.DB.QueryRow(context.Background(), "SELECT pos FROM ledger_marks WHERE log = 'events'").Scan(&pos); err != nil {
		t.Fatal(err)
	}
	if pos < ev.Pos {
		t.Fatalf("recorded mark %d, want at least %d", pos, ev.Pos)
	}
}

// catchUpKeys has the keys log append every key change committed so far.
func catchUpKeys(t testing.TB, n *testnode.Node) []ledger.KeyEntry {
	t.Helper()
	ctx := context.Background()
	for {
		more, err := n.LedgerKeys.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	size, err := n.LedgerKeys.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := n.LedgerKeys.Entries(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestIdentityKeysLogged: a device's keys, the cross-signing keys and the
// device's removal are logged in the identity keys log, once each (a
// restart adds nothing), and its checkpoint is served and signed.
func TestIdentityKeysLogged(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.LedgerKeys = true })
	alice := n.Register("alice")
	d := testnode.NewE2EEDevice(t, "alice", alice)
	if _, _, err := d.Mach.GenerateAndUploadCrossSigningKeysWithPassword(ctx, testnode.Password, ""); err != nil {
		t.Fatal(err)
	}
	entries := catchUpKeys(t, n)
	device := "device:" + string(alice.DeviceID)
	signing := "ed25519:" + string(alice.DeviceID) + "=" + string(d.Mach.OwnIdentity().SigningKey)
	own, err := d.Mach.GetOwnCrossSigningPublicKeys(ctx)
	if err != nil || own == nil {
		t.Fatalf("own cross-signing keys: %v", err)
	}
	master := own.MasterKey
	want := map[string]string{device: signing, "cross_signing:master": "ed25519:" + string(master) + "=" + string(master)}
	got := map[string]string{}
	for _, e := range entries {
		if e.UserID != string(alice.UserID) {
			t.Fatalf("entry of another user: %+v", e)
		}
		if _, dup := got[e.Key]; dup {
			t.Fatalf("%s logged twice: %+v", e.Key, entries)
		}
		got[e.Key] = e.PublicKeys
	}
	if !strings.Contains(got[device], signing) || got["cross_signing:master"] != want["cross_signing:master"] ||
		got["cross_signing:self_signing"] == "" || got["cross_signing:user_signing"] == "" {
		t.Fatalf("logged keys %v, want %v and the self- and user-signing keys", got, want)
	}

	if _, err := alice.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	entries = catchUpKeys(t, n)
	if last := entries[len(entries)-1]; last.Key != device || last.PublicKeys != "" {
		t.Fatalf("after logout the last entry is %+v, want %s removed", last, device)
	}
	size := len(entries)
	n = n.Restart()
	if entries := catchUpKeys(t, n); len(entries) != size {
		t.Fatalf("a restart changed the keys log from %d to %d entries", size, len(entries))
	}
	r := n.Do(t, "GET", ledger.KeysTilesPrefix+"checkpoint", "", nil, testnode.NoSpecCheck())
	if r.Status != http.StatusOK {
		t.Fatalf("keys checkpoint: %d %s", r.Status, r.Body)
	}
	cp, err := ledger.OpenCheckpoint(r.Body, n.LedgerKeys.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != uint64(size) || cp.Origin != ledger.KeysOrigin(n.Config.ServerName) {
		t.Fatalf("keys checkpoint %+v, want %d entries", cp, size)
	}
}

// TestIdentityKeysLogOffByDefault: without ledger_keys the identity keys
// log is neither kept nor served, so an unauthenticated caller learns
// nothing of the local users who upload keys, while the events log is
// served as usual.
func TestIdentityKeysLogOffByDefault(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	d := testnode.NewE2EEDevice(t, "alice", alice)
	if _, _, err := d.Mach.GenerateAndUploadCrossSigningKeysWithPassword(ctx, testnode.Password, ""); err != nil {
		t.Fatal(err)
	}
	keys, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{alice.UserID: nil}})
	if err != nil || len(keys.DeviceKeys[alice.UserID]) == 0 {
		t.Fatalf("alice's uploaded keys are not queryable: %v %+v", err, keys)
	}
	if n.LedgerKeys != nil {
		t.Fatal("the identity keys log is open with ledger_keys off")
	}
	admin := n.RegisterAdmin("admin")
	if r := n.Do(t, "GET", ledger.TilesPrefix+"checkpoint", admin.AccessToken, nil, testnode.NoSpecCheck()); r.Status != http.StatusOK {
		t.Fatalf("events checkpoint: %d %s", r.Status, r.Body)
	}
	for _, p := range []string{"checkpoint", "key", "tile/entries/000", "tile/0/000"} {
		r := n.Do(t, "GET", ledger.KeysTilesPrefix+p, "", nil, testnode.NoSpecCheck())
		if r.Status != http.StatusNotFound {
			t.Errorf("GET %s%s: %d, want 404", ledger.KeysTilesPrefix, p, r.Status)
		}
		if strings.Contains(string(r.Body), "@alice") {
			t.Errorf("GET %s%s names alice: %s", ledger.KeysTilesPrefix, p, r.Body)
		}
	}
	if _, err := os.Stat(filepath.Join(n.Config.DataDir, "ledger", "keys")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the keys log's directory: %v, want none", err)
	}
}

// ledgerPublicKey returns the ed25519 key of a note verifier key.
func ledgerPublicKey(t testing.TB, vkey string) ed25519.PublicKey {
	t.Helper()
	parts := strings.SplitN(vkey, "+", 3) // name+hash+base64, whose alphabet has "+"
	if len(parts) != 3 {
		t.Fatalf("log key %q: not name+hash+key", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize {
		t.Fatalf("log key %q: %v", vkey, err)
	}
	return raw[1:]
}

// TestLedgerKeyIsNotTheNodeKey: the ledger signs with a key of its own,
// derived from the node's, not with the federation key; proofs verify with
// it, and after "matrixos key rotate" the ledger has a new key, neither
// node key, with which the next proofs verify.
func TestLedgerKeyIsNotTheNodeKey(t *testing.T) {
	ctx := context.Background()
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.Ledger = "all" })
	alice := n.Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{})
	wantLogged(t, n, alice, room, testnode.SendText(t, alice, room, "before the rotation"))
	_, nodeKey, err := node.LoadOrCreateKey(n.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	first := ledgerPublicKey(t, n.Ledger.PublicKey)
	if first.Equal(nodeKey.Public()) {
		t.Fatal("the ledger signs with the node's federation key")
	}

	cfg := n.Config
	n.Stop()
	if _, _, err := node.RotateKey(ctx, cfg, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	n = testnode.StartConfig(t, cfg)
	alice = n.Login(alice.UserID)
	wantLogged(t, n, alice, room, testnode.SendText(t, alice, room, "after the rotation"))
	_, newNodeKey, err := node.LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	second := ledgerPublicKey(t, n.Ledger.PublicKey)
	if newNodeKey.Equal(nodeKey) || second.Equal(first) || second.Equal(newNodeKey.Public()) {
		t.Fatal("after the rotation the ledger key is the old one or the node's new key")
	}
}

// TestTilesServedToAdminsOnly: by default the events log's checkpoint and
// tiles, which name every logged room and event (with ledger: all, direct
// messages included), are served only to server admins: no token gets
// 401, a plain local account (even one in the room) 403; the key stays
// public.
func TestTilesServedToAdminsOnly(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.Ledger = "all" })
	alice := n.Register("alice")
	bob := n.Register("bob")
	admin := n.RegisterAdmin("admin")
	dm := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{IsDirect: true, Invite: []id.UserID{bob.UserID}})
	v := wantLogged(t, n, alice, dm, testnode.SendText(t, alice, dm, "a direct message"))
	tile := "tile/entries/000.p/" + strconv.FormatUint(v.Checkpoint.Size, 10)
	if v.Checkpoint.Size >= 256 {
		t.Fatalf("checkpoint of %d entries: the test reads the first partial bundle", v.Checkpoint.Size)
	}
	for _, p := range []string{"checkpoint", tile} {
		r := n.Do(t, "GET", ledger.TilesPrefix+p, "", nil, testnode.NoSpecCheck())
		r.Want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
		if strings.Contains(string(r.Body), string(dm)) {
			t.Fatalf("GET %s without a token names the room: %s", p, r.Body)
		}
		r = n.Do(t, "GET", ledger.TilesPrefix+p, bob.AccessToken, nil, testnode.NoSpecCheck())
		r.Want(t, http.StatusForbidden, "M_FORBIDDEN")
		if strings.Contains(string(r.Body), string(dm)) {
			t.Fatalf("GET %s with a plain local token names the room: %s", p, r.Body)
		}
		r = n.Do(t, "GET", ledger.TilesPrefix+p, admin.AccessToken, nil, testnode.NoSpecCheck())
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s with an admin's token: %d %s", p, r.Status, r.Body)
		}
		if p == tile && !strings.Contains(string(r.Body), string(dm)) {
			t.Fatalf("the entry bundle read by an admin does not name the room %s", dm)
		}
	}
	key := n.Do(t, "GET", ledger.TilesPrefix+"key", "", nil, testnode.NoSpecCheck())
	if key.Status != http.StatusOK || strings.TrimSpace(string(key.Body)) != n.Ledger.PublicKey {
		t.Fatalf("key without a token: %d %s", key.Status, key.Body)
	}
}
