package keys_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/keys"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/testnode"
)

// federatingPair starts two federating nodes on the engine.
func federatingPair(t *testing.T, engine testnode.Engine) (a, b *testnode.Node) {
	t.Helper()
	ca := testnode.NewCA(t)
	return testnode.StartFederating(t, engine, ca), testnode.StartFederating(t, engine, ca)
}

// uploadAll uploads a fake device's keys, one-time keys k1 and k2, a
// fallback key fb and cross-signing keys, and returns the master key.
func uploadAll(t *testing.T, c *mautrix.Client) (*fakeDevice, keyPair) {
	t.Helper()
	dev := newFakeDevice(t, c)
	testnode.Call(t, c, "POST", v3+"/keys/upload", map[string]any{
		"device_keys": dev.deviceKeys(t),
		"one_time_keys": map[string]any{
			"signed_curve25519:AAAAAQ": dev.otk(t, "k1", false),
		},
		"fallback_keys": map[string]any{"signed_curve25519:AAAAFB": dev.otk(t, "fb", true)},
	}).OK(t)
	master, ssk := newKeyPair(t), newKeyPair(t)
	testnode.Call(t, c, "POST", v3+"/keys/device_signing/upload", map[string]any{
		"master_key":       crossSigningKey(c.UserID, "master", master),
		"self_signing_key": master.sign(t, crossSigningKey(c.UserID, "self_signing", ssk), c.UserID, "ed25519:"+master.pub),
	}).OK(t)
	return dev, master
}

// TestRemoteKeysQueryClaim: a user on node A queries and claims the keys
// of a user on node B through A's client API, which asks B over
// federation; a server that cannot be reached is reported in failures.
func TestRemoteKeysQueryClaim(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			a, b := federatingPair(t, engine)
			alice, bob := a.Register("alice"), b.Register("bob")
			dev, master := uploadAll(t, bob)

			q := testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{
				"device_keys": map[string]any{string(bob.UserID): []string{}, "@x:127.0.0.1:1": []string{}},
				"timeout":     5000,
			}).OK(t)
			if get(q, "device_keys", string(bob.UserID), string(bob.DeviceID), "keys", "ed25519:"+string(bob.DeviceID)) != dev.key.pub {
				t.Fatalf("A's query did not return Bob's device keys: %v", q)
			}
			if get(q, "master_keys", string(bob.UserID), "keys", "ed25519:"+master.pub) != master.pub {
				t.Errorf("master key missing: %v", q)
			}
			if get(q, "self_signing_keys", string(bob.UserID)) == nil {
				t.Errorf("self-signing key missing: %v", q)
			}
			if get(q, "failures", b.Config.ServerName) != nil {
				t.Errorf("B reported as failed: %v", q)
			}
			if get(q, "failures", "127.0.0.1:1") == nil {
				t.Errorf("an unreachable server is not in failures: %v", q)
			}

			// Alice signs Bob's master key with her user-signing key: the
			// signature is kept here and shown to her alone.
			aliceMaster, aliceUSK := newKeyPair(t), newKeyPair(t)
			testnode.Call(t, alice, "POST", v3+"/keys/device_signing/upload", map[string]any{
				"master_key":       crossSigningKey(alice.UserID, "master", aliceMaster),
				"user_signing_key": aliceMaster.sign(t, crossSigningKey(alice.UserID, "user_signing", aliceUSK), alice.UserID, "ed25519:"+aliceMaster.pub),
			}).OK(t)
			signed := aliceUSK.sign(t, crossSigningKey(bob.UserID, "master", master), alice.UserID, "ed25519:"+aliceUSK.pub)
			res := testnode.Call(t, alice, "POST", v3+"/keys/signatures/upload", map[string]any{
				string(bob.UserID): map[string]any{master.pub: signed},
			}).OK(t)
			if f, _ := res["failures"].(map[string]any); len(f) != 0 {
				t.Fatalf("signing a remote master key: %v", res)
			}
			q = testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
			if get(q, "master_keys", string(bob.UserID), "signatures", string(alice.UserID), "ed25519:"+aliceUSK.pub) == nil {
				t.Errorf("Alice's signature of Bob's master key is missing from her query: %v", get(q, "master_keys"))
			}

			claim := func() map[string]any {
				r := testnode.Call(t, alice, "POST", v3+"/keys/claim", map[string]any{
					"one_time_keys": map[string]any{string(bob.UserID): map[string]any{string(bob.DeviceID): "signed_curve25519"}},
				}).OK(t)
				if f, _ := r["failures"].(map[string]any); len(f) != 0 {
					t.Fatalf("claim failures: %v", r)
				}
				return r
			}
			if k := get(claim(), "one_time_keys", string(bob.UserID), string(bob.DeviceID), "signed_curve25519:AAAAAQ", "key"); k != "k1" {
				t.Errorf("first remote claim got %v, want k1", k)
			}
			if k := get(claim(), "one_time_keys", string(bob.UserID), string(bob.DeviceID), "signed_curve25519:AAAAFB", "key"); k != "fb" {
				t.Errorf("second remote claim got %v, want the fallback key", k)
			}
		})
	}
}

// TestFederationUserDevices: GET /user/devices answers a local user's
// devices with keys, cross-signing keys and a stream_id that moves when a
// device changes; the keys endpoints refuse users of other servers and
// requests without X-Matrix.
func TestFederationUserDevices(t *testing.T) {
	a, b := federatingPair(t, testnode.SQLite)
	ctx := context.Background()
	bob := b.Register("bob")
	dev, master := uploadAll(t, bob)

	devices := func() map[string]any {
		var resp map[string]any
		err := a.Federation.Client.MakeRequest(ctx, b.Config.ServerName, true, http.MethodGet,
			federation.URLPath{"v1", "user", "devices", bob.UserID}, nil, &resp)
		if err != nil {
			t.Fatalf("GET /user/devices: %v", err)
		}
		return resp
	}
	got := devices()
	list, _ := got["devices"].([]any)
	if got["user_id"] != string(bob.UserID) || len(list) != 1 {
		t.Fatalf("/user/devices = %v", got)
	}
	if get(list[0], "device_id") != string(bob.DeviceID) || get(list[0], "keys", "keys", "ed25519:"+string(bob.DeviceID)) != dev.key.pub {
		t.Errorf("device entry = %v", list[0])
	}
	if get(got, "master_key", "keys", "ed25519:"+master.pub) != master.pub || get(got, "self_signing_key") == nil {
		t.Errorf("cross-signing keys missing: %v", got)
	}
	stream, _ := got["stream_id"].(float64)
	if stream <= 0 {
		t.Errorf("stream_id = %v, want a positive ID after an upload", got["stream_id"])
	}

	// A second device with keys: the stream moves on.
	bob2 := b.Login(bob.UserID)
	testnode.Call(t, bob2, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob2).deviceKeys(t)}).OK(t)
	got = devices()
	if next, _ := got["stream_id"].(float64); next <= stream {
		t.Errorf("stream_id %v after a new device, want more than %v", got["stream_id"], stream)
	}
	if list, _ := got["devices"].([]any); len(list) != 2 {
		t.Errorf("devices after a second upload: %v", got["devices"])
	}

	// Users of other servers are not B's to answer for.
	var resp map[string]any
	err := a.Federation.Client.MakeRequest(ctx, b.Config.ServerName, true, http.MethodGet,
		federation.URLPath{"v1", "user", "devices", "@someone:" + a.Config.ServerName}, nil, &resp)
	if code, status := testnode.ErrCode(err); code != "M_INVALID_PARAM" || status != http.StatusBadRequest {
		t.Errorf("/user/devices for a remote user: %v", err)
	}
	// The keys query leaves them out.
	err = a.Federation.Client.MakeRequest(ctx, b.Config.ServerName, true, http.MethodPost,
		federation.URLPath{"v1", "user", "keys", "query"}, map[string]any{"device_keys": map[string]any{"@someone:" + a.Config.ServerName: []string{}}}, &resp)
	if err != nil || len(resp["device_keys"].(map[string]any)) != 0 {
		t.Errorf("/user/keys/query for a remote user: %v, %v", resp, err)
	}
	// Bad bodies get the spec's errors.
	err = a.Federation.Client.MakeRequest(ctx, b.Config.ServerName, true, http.MethodPost,
		federation.URLPath{"v1", "user", "keys", "claim"}, map[string]any{}, &resp)
	if code, _ := testnode.ErrCode(err); code != "M_MISSING_PARAM" {
		t.Errorf("/user/keys/claim without one_time_keys: %v", err)
	}
	// Without X-Matrix: 401.
	b.FederationDo(t, "POST", "/_matrix/federation/v1/user/keys/query", map[string]any{"device_keys": map[string]any{}}).Want(t, http.StatusUnauthorized, "M_UNAUTHORIZED")
}

// toDeviceBodies long-polls c's /sync from since until the to-device
// bodies received reach want (or ten seconds pass) and returns them with
// the last next_batch.
func toDeviceBodies(t *testing.T, c *mautrix.Client, since string, want int) ([]string, string) {
	t.Helper()
	var bodies []string
	deadline := time.Now().Add(10 * time.Second)
	for len(bodies) < want && time.Now().Before(deadline) {
		s := testnode.SyncOnce(t, c, since, 1000)
		since = s.NextBatch
		for _, ev := range s.ToDevice.Events {
			body, _ := ev.Content.Raw["body"].(string)
			bodies = append(bodies, body)
		}
	}
	return bodies, since
}

// TestToDeviceAcrossServers: a to-device message from a user on node A
// to a device on node B arrives there; one sent while B is down arrives
// after B restarts, once although the client sent it twice.
func TestToDeviceAcrossServers(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			a, b := federatingPair(t, engine)
			alice, bob := a.Register("alice"), b.Register("bob")
			send := func(txnID, device, body string) {
				testnode.Call(t, alice, "PUT", v3+"/sendToDevice/m.test/"+txnID, map[string]any{
					"messages": map[string]any{string(bob.UserID): map[string]any{device: map[string]any{"body": body}}},
				}).OK(t)
			}
			since := testnode.SyncOnce(t, bob, "", 0).NextBatch
			send("t1", string(bob.DeviceID), "one")
			got, since := toDeviceBodies(t, bob, since, 1)
			if !slices.Equal(got, []string{"one"}) {
				t.Fatalf("B got %q, want [one]", got)
			}

			b.Stop()
			send("t2", "*", "two")
			send("t2", "*", "two") // the client's retry
			b = b.Restart()
			bob.HomeserverURL = mustURL(t, b.URL)
			// B contacting A wakes A's queue for B at once.
			testnode.Call(t, bob, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(alice.UserID): []string{}}}).OK(t)
			got, since = toDeviceBodies(t, bob, since, 1)
			if !slices.Equal(got, []string{"two"}) {
				t.Fatalf("B got %q after its restart, want [two]", got)
			}
			send("t3", string(bob.DeviceID), "three")
			if got, _ = toDeviceBodies(t, bob, since, 1); !slices.Equal(got, []string{"three"}) {
				t.Fatalf("B got %q, want [three] (and no second 'two')", got)
			}
		})
	}
}

// joinAcross makes a public room of alice's on node a and has bob (of
// another node) join it over federation, waiting until a sees him joined.
func joinAcross(t *testing.T, a *testnode.Node, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	roomID := testnode.PublicRoom(t, alice)
	if _, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.Config.ServerName}}); err != nil {
		t.Fatalf("%s joins over federation: %v", bob.UserID, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		members, err := alice.JoinedMembers(ctx, roomID)
		if err == nil {
			if _, ok := members.Joined[bob.UserID]; ok {
				return roomID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not see %s joined: %v", alice.UserID, bob.UserID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queryDevices returns the device IDs of user that c's /keys/query lists.
func queryDevices(t *testing.T, c *mautrix.Client, user id.UserID) []string {
	t.Helper()
	q := testnode.Call(t, c, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(user): []string{}}}).OK(t)
	devs, _ := get(q, "device_keys", string(user)).(map[string]any)
	var out []string
	for d := range devs {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// changedUntil long-polls c's /sync from since until device_lists.changed
// names user, and returns the next token.
func changedUntil(t *testing.T, c *mautrix.Client, since string, user id.UserID) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s := testnode.SyncOnce(t, c, since, 1000)
		since = s.NextBatch
		if slices.Contains(s.DeviceLists.Changed, user) {
			return since
		}
	}
	t.Fatalf("%s's sync never listed %s in device_lists.changed", c.UserID, user)
	return ""
}

// waitTracked waits until node n holds a current copy of user's device
// list.
func waitTracked(t *testing.T, n *testnode.Node, user id.UserID) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var stale bool
		err := n.DB.QueryRow(context.Background(), "SELECT stale FROM e2e_remote_device_lists WHERE user_id = $1", user).Scan(&stale)
		if err == nil && !stale {
			return
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("the cached device list of %s: %v", user, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds no current device list of %s", n.Config.ServerName, user)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamOf returns the stream ID of the last device-list update of a local
// user of node n (0 when there was none).
func streamOf(t *testing.T, n *testnode.Node, user id.UserID) int64 {
	t.Helper()
	var streamID int64
	err := n.DB.QueryRow(context.Background(), "SELECT stream_id FROM e2e_device_list_streams WHERE user_id = $1", user).Scan(&streamID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("the device-list stream of %s: %v", user, err)
	}
	return streamID
}

// waitHeld waits until node b has made an update of user's device list
// after stream ID after, node a holds a current copy of the list at b's
// last update, and a's syncs reach the change a recorded for it.
func waitHeld(t *testing.T, a, b *testnode.Node, user id.UserID, after int64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var held, changed int64
		var stale bool
		err := a.DB.QueryRow(ctx, "SELECT stream_id, stale FROM e2e_remote_device_lists WHERE user_id = $1", user).Scan(&held, &stale)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("the cached device list of %s: %v", user, err)
		}
		if err := a.DB.QueryRow(ctx, "SELECT COALESCE(MAX(pos), 0) FROM e2e_device_changes WHERE user_id = $1", user).Scan(&changed); err != nil {
			t.Fatalf("the device list changes of %s: %v", user, err)
		}
		if last := streamOf(t, b, user); err == nil && !stale && last > after && held == last && a.DB.Visible() >= changed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds no copy of %s's device list at %s's last update", a.Config.ServerName, user, b.Config.ServerName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRemoteDeviceListTracking: once Bob on node B shares a room with
// Alice on node A, A tracks Bob's device list: a new device of Bob's puts
// him in Alice's device_lists.changed and /keys/query lists it; an update
// that does not follow the last one A holds (a gap in prev_id) makes A
// fetch the whole list again from B, so a device B never had is not
// listed.
func TestRemoteDeviceListTracking(t *testing.T) {
	ctx := context.Background()
	a, b := federatingPair(t, testnode.SQLite)
	alice, bob := a.Register("alice"), b.Register("bob")
	testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
	uploaded := streamOf(t, b, bob.UserID)
	since := testnode.SyncOnce(t, alice, "", 0).NextBatch
	joinAcross(t, a, alice, bob)
	changedUntil(t, alice, since, bob.UserID) // Bob now shares a room
	if got := queryDevices(t, alice, bob.UserID); !slices.Equal(got, []string{string(bob.DeviceID)}) {
		t.Fatalf("Alice's query lists %v, want Bob's device", got)
	}
	// The query, or B's announcement of Bob's devices on his join, made A
	// fetch Bob's list; once A holds the announcement, no change of Bob's
	// is on its way.
	waitHeld(t, a, b, bob.UserID, uploaded)
	since = testnode.SyncOnce(t, alice, "", 0).NextBatch

	bob2 := b.Login(bob.UserID)
	testnode.Call(t, bob2, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob2).deviceKeys(t)}).OK(t)
	since = changedUntil(t, alice, since, bob.UserID)
	want := []string{string(bob.DeviceID), string(bob2.DeviceID)}
	slices.Sort(want)
	if got := queryDevices(t, alice, bob.UserID); !slices.Equal(got, want) {
		t.Fatalf("after Bob's new device Alice's query lists %v, want %v", got, want)
	}

	ghost := map[string]any{"user_id": bob.UserID, "device_id": "GHOST", "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]any{"ed25519:GHOST": "x"}}
	err := a.Keys.HandleDeviceListUpdate(ctx, b.Config.ServerName, edu(t, map[string]any{
		"user_id": bob.UserID, "device_id": "GHOST", "stream_id": 1 << 40, "prev_id": []int64{1<<40 - 1}, "keys": ghost}))
	if err != nil {
		t.Fatal(err)
	}
	changedUntil(t, alice, since, bob.UserID)
	waitTracked(t, a, bob.UserID)
	// The list fetched again answers Alice's query even while B is down.
	b.Stop()
	q := testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
	devs, _ := get(q, "device_keys", string(bob.UserID)).(map[string]any)
	if len(devs) != 2 || devs[string(bob.DeviceID)] == nil || devs[string(bob2.DeviceID)] == nil {
		t.Errorf("Alice's query from A's cache with B down: %v", q)
	}
	if f, _ := q["failures"].(map[string]any); len(f) != 0 {
		t.Errorf("A asked B although it tracks Bob's list: %v", f)
	}

	// An update from another server than Bob's is refused.
	err = a.Keys.HandleDeviceListUpdate(ctx, "elsewhere.example", edu(t, map[string]any{
		"user_id": bob.UserID, "device_id": "GHOST", "stream_id": 1, "prev_id": []int64{}, "keys": ghost}))
	if e, ok := mxhttp.AsError(err); !ok || e.Code != "M_FORBIDDEN" {
		t.Errorf("forged m.device_list_update: %v, want M_FORBIDDEN", err)
	}
}

// requestLog records the requests a node's keys service makes of other
// servers.
type requestLog struct {
	keys.FederationClient
	mu       sync.Mutex
	requests []string
}

func (l *requestLog) MakeRequest(ctx context.Context, server string, auth bool, method string, path mautrix.PrefixableURLPath, req, resp any) error {
	l.mu.Lock()
	var parts []string
	for _, part := range path.FullPath() {
		parts = append(parts, fmt.Sprint(part))
	}
	l.requests = append(l.requests, method+" /"+strings.Join(parts, "/"))
	l.mu.Unlock()
	return l.FederationClient.MakeRequest(ctx, server, auth, method, path, req, resp)
}

// made returns the requests recorded so far.
func (l *requestLog) made() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.requests)
}

// TestQueryFetchesTrackedList: the first /keys/query of a remote user who
// shares a room with a user here fetches the user's device list (GET
// /user/devices) and answers from it, so the next query is answered from
// the list held, without a second request: before, the query asked
// /user/keys/query and fetched the list in the background after answering,
// two requests where one does (Complement's msc3902 "Device list tracked
// for new members in partial state room" counts them).
func TestQueryFetchesTrackedList(t *testing.T) {
	a, b := federatingPair(t, testnode.SQLite)
	log := &requestLog{}
	a.Keys.WrapFederationClient(func(c keys.FederationClient) keys.FederationClient {
		log.FederationClient = c
		return log
	})
	alice, bob := a.Register("alice"), b.Register("bob")
	joinAcross(t, a, alice, bob)
	// Bob has no device with keys: B announces nothing as he joins, and A
	// fetches no list until asked.
	before := len(log.made())
	if got := queryDevices(t, alice, bob.UserID); len(got) != 0 {
		t.Fatalf("Alice's first query lists %v, want none (Bob uploaded no keys)", got)
	}
	want := []string{"GET /_matrix/federation/v1/user/devices/" + string(bob.UserID)}
	if got := log.made()[before:]; !slices.Equal(got, want) {
		t.Fatalf("Alice's first query made %v, want %v", got, want)
	}
	queryDevices(t, alice, bob.UserID)
	if got := log.made()[before:]; !slices.Equal(got, want) {
		t.Errorf("after Alice's second query A made %v, want only the first query's %v", got, want)
	}
	if s := streamOf(t, b, bob.UserID); s != 0 {
		t.Errorf("B recorded device-list update %d of Bob, who has no device with keys, when he joined", s)
	}
}

// TestKeylessRenameGoesOut: a rename of Bob's device, which has no keys,
// is an update of his device-list stream that reaches the servers sharing
// a room with him (Complement's msc3902 "Outgoing device list updates"
// renames devices without keys): A, holding Bob's list, moves on to it.
func TestKeylessRenameGoesOut(t *testing.T) {
	a, b := federatingPair(t, testnode.SQLite)
	alice, bob := a.Register("alice"), b.Register("bob")
	joinAcross(t, a, alice, bob)
	queryDevices(t, alice, bob.UserID) // A fetches Bob's list
	before := streamOf(t, b, bob.UserID)
	testnode.Call(t, bob, "PUT", v3+"/devices/"+string(bob.DeviceID), map[string]any{"display_name": "renamed"}).OK(t)
	waitHeld(t, a, b, bob.UserID, before)
}

// TestDevicesAnnouncedOnJoin: when Bob on node B joins a room on node A,
// a server that was not receiving his device-list updates, B announces
// his devices to A (his second device has no keys yet), so A tracks his
// list without anyone asking; Bob's own sync lists him in
// device_lists.changed, for his other devices. An update of a device
// without keys moves A's copy of the stream on without putting Bob in
// Alice's device_lists.changed: no list a client sees changed.
func TestDevicesAnnouncedOnJoin(t *testing.T) {
	ctx := context.Background()
	a, b := federatingPair(t, testnode.SQLite)
	alice, bob := a.Register("alice"), b.Register("bob")
	testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
	bob2 := b.Login(bob.UserID)
	uploaded := streamOf(t, b, bob.UserID)
	since := testnode.SyncOnce(t, bob, "", 0).NextBatch
	joinAcross(t, a, alice, bob)
	changedUntil(t, bob, since, bob.UserID)
	waitHeld(t, a, b, bob.UserID, uploaded)
	if got := queryDevices(t, alice, bob.UserID); !slices.Equal(got, []string{string(bob.DeviceID)}) {
		t.Fatalf("Alice's query lists %v, want Bob's device with keys", got)
	}

	var held int64
	if err := a.DB.QueryRow(ctx, "SELECT stream_id FROM e2e_remote_device_lists WHERE user_id = $1", bob.UserID).Scan(&held); err != nil {
		t.Fatal(err)
	}
	aliceSince := testnode.SyncOnce(t, alice, "", 0).NextBatch
	err := a.Keys.HandleDeviceListUpdate(ctx, b.Config.ServerName, edu(t, map[string]any{
		"user_id": bob.UserID, "device_id": bob2.DeviceID, "stream_id": held + 1, "prev_id": []int64{held}}))
	if err != nil {
		t.Fatal(err)
	}
	var now int64
	if err := a.DB.QueryRow(ctx, "SELECT stream_id FROM e2e_remote_device_lists WHERE user_id = $1", bob.UserID).Scan(&now); err != nil {
		t.Fatal(err)
	}
	if now != held+1 {
		t.Fatalf("A holds stream %d after the keyless update, want %d", now, held+1)
	}
	if s := testnode.SyncOnce(t, alice, aliceSince, 0); slices.Contains(s.DeviceLists.Changed, bob.UserID) {
		t.Errorf("a device without keys put Bob in Alice's device_lists.changed")
	}
}

// TestRemoteDeviceDisplayName: the display name of a remote device, which
// its server gives in /user/devices and in m.device_list_update, is in
// unsigned.device_display_name of the keys a local /keys/query serves from
// the cached list, as for a local device (Complement's
// TestFederationKeyUploadQuery).
func TestRemoteDeviceDisplayName(t *testing.T) {
	a, b := federatingPair(t, testnode.SQLite)
	alice, bob := a.Register("alice"), b.Register("bob")
	rename := func(name string) {
		t.Helper()
		testnode.Call(t, bob, "PUT", v3+"/devices/"+string(bob.DeviceID), map[string]any{"display_name": name}).OK(t)
	}
	rename("first name")
	testnode.Call(t, bob, "POST", v3+"/keys/upload", map[string]any{"device_keys": newFakeDevice(t, bob).deviceKeys(t)}).OK(t)
	uploaded := streamOf(t, b, bob.UserID)
	joinAcross(t, a, alice, bob)
	waitHeld(t, a, b, bob.UserID, uploaded) // fetched with /user/devices
	since := testnode.SyncOnce(t, alice, "", 0).NextBatch
	displayName := func() any {
		q := testnode.Call(t, alice, "POST", v3+"/keys/query", map[string]any{"device_keys": map[string]any{string(bob.UserID): []string{}}}).OK(t)
		if f, _ := q["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("A asked B although it holds Bob's list: %v", f)
		}
		return get(q, "device_keys", string(bob.UserID), string(bob.DeviceID), "unsigned", "device_display_name")
	}
	if got := displayName(); got != "first name" {
		t.Errorf("display name from the fetched list = %v, want first name", got)
	}

	rename("second name") // an m.device_list_update
	changedUntil(t, alice, since, bob.UserID)
	if got := displayName(); got != "second name" {
		t.Errorf("display name after the update = %v, want second name", got)
	}
}
