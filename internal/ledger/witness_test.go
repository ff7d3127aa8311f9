package ledger_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/node"
	"github.com/matrixos/matrixos/internal/testnode"
)

func ledgerAll(c *config.Config) { c.Ledger = "all" }

// witnessedBy returns the names of the witnesses among keys that cosigned
// the node's published witnessed checkpoint.
func witnessedBy(t testing.TB, n *testnode.Node, keys ...string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(node.LedgerDir(n.Config), ledger.WitnessedCheckpointPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.OpenCheckpoint(raw, n.Ledger.PublicKey); err != nil {
		t.Fatalf("witnessed checkpoint: %v", err)
	}
	var vs []note.Verifier
	for _, k := range keys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	nt, err := note.Open(raw, note.VerifierList(vs...))
	if err != nil {
		return nil
	}
	var names []string
	for _, s := range nt.Sigs {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

// TestThreeNodesWitnessEachOther: three federating nodes that share a
// room, all logging it, cosign each other's checkpoints; a proof bundle
// from one of them verifies offline with the other two's witness keys,
// and not against a threshold they do not meet.
func TestThreeNodesWitnessEachOther(t *testing.T) {
	ca := testnode.NewCA(t)
	nodes := []*testnode.Node{
		testnode.StartFederating(t, testnode.SQLite, ca, ledgerAll),
		testnode.StartFederating(t, testnode.SQLite, ca, ledgerAll),
		testnode.StartFederating(t, testnode.SQLite, ca, ledgerAll),
	}
	ctx := t.Context()
	alice := nodes[0].Register("alice")
	room := testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "witnessed"})
	for _, n := range nodes[1:] {
		c := n.Register("bob")
		if _, err := c.JoinRoom(ctx, "#witnessed:"+nodes[0].Config.ServerName, nil); err != nil {
			t.Fatalf("join from %s: %v", n.Config.ServerName, err)
		}
		if _, err := c.SendText(ctx, room, "hello from "+n.Config.ServerName); err != nil {
			t.Fatal(err)
		}
	}
	sent, err := alice.SendText(ctx, room, "witness this")
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		var others, names []string
		for j, o := range nodes {
			if j != i {
				others = append(others, o.Witness.PublicKey)
				names = append(names, ledger.WitnessName(o.Config.ServerName))
			}
		}
		slices.Sort(names)
		testnode.WaitFor(t, 60*time.Second, n.Config.ServerName+"'s checkpoint cosigned by the two others", func() bool {
			return slices.Equal(witnessedBy(t, n, others...), names)
		})
	}

	witnesses := []string{nodes[1].Witness.PublicKey, nodes[2].Witness.PublicKey}
	var bundle []byte
	testnode.WaitFor(t, 60*time.Second, "a cosigned proof bundle of alice's message", func() bool {
		r := testnode.Call(t, alice, "GET", proofPath(room, sent.EventID), nil)
		if r.Status != http.StatusOK {
			return false
		}
		bundle = r.Body
		_, err := ledger.VerifyWitnessed(bundle, nodes[0].Ledger.PublicKey, witnesses, 2)
		return err == nil
	})
	v, err := ledger.VerifyWitnessed(bundle, nodes[0].Ledger.PublicKey, witnesses, 2)
	if err != nil {
		t.Fatal(err)
	}
	if v.Entry.EventID != string(sent.EventID) || len(v.Witnesses) != 2 {
		t.Fatalf("verified %+v", v)
	}
	// A witness that did not cosign (the log's own) does not count.
	_, err = ledger.VerifyWitnessed(bundle, nodes[0].Ledger.PublicKey, append(witnesses, nodes[0].Witness.PublicKey), 3)
	if !errors.Is(err, ledger.ErrTooFewWitnesses) {
		t.Fatalf("threshold 3 with a witness that did not cosign: %v", err)
	}
	// A cosignature line altered in the bundle fails.
	tampered := strings.Replace(string(bundle), ledger.WitnessName(nodes[1].Config.ServerName)+" ", ledger.WitnessName(nodes[1].Config.ServerName)+" AAAA", 1)
	if _, err := ledger.VerifyWitnessed([]byte(tampered), nodes[0].Ledger.PublicKey, witnesses, 2); err == nil {
		t.Fatal("a bundle with an altered cosignature verifies")
	}
}

// forger signs checkpoints of a node's log with the log's own key, as a
// log that forks would.
type forger struct {
	origin, vkey string
	signer       note.Signer
}

func newForger(t testing.TB, n *testnode.Node) *forger {
	t.Helper()
	_, nodeKey, err := node.LoadOrCreateKey(n.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ledger.DeriveKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	origin := ledger.EventsOrigin(n.Config.ServerName)
	signer, vkey, err := ledger.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	if vkey != n.Ledger.PublicKey {
		t.Fatalf("derived key %s, the log's is %s", vkey, n.Ledger.PublicKey)
	}
	return &forger{origin: origin, vkey: vkey, signer: signer}
}

// checkpoint signs the checkpoint of tree at size.
func (f *forger) checkpoint(t testing.TB, tree *testonly.Tree, size uint64) string {
	t.Helper()
	text := fmt.Sprintf("%s\n%d\n%s\n", f.origin, size, base64.StdEncoding.EncodeToString(tree.HashAt(size)))
	signed, err := note.Sign(&note.Note{Text: text}, f.signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// request is an add-checkpoint body from old to size of tree.
func (f *forger) request(t testing.TB, tree *testonly.Tree, old, size uint64) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "old %d\n", old)
	if old > 0 && old < size {
		hashes, err := tree.ConsistencyProof(old, size)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hashes {
			b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
		}
	}
	return b.String() + "\n" + f.checkpoint(t, tree, size)
}

func newTree(leaves ...string) *testonly.Tree {
	tree := testonly.New(rfc6962.DefaultHasher)
	for _, l := range leaves {
		tree.AppendData([]byte(l))
	}
	return tree
}

// addCheckpoint posts an add-checkpoint request from the node from to the
// witness of to, signed with X-Matrix.
func addCheckpoint(t testing.TB, from, to *testnode.Node, req ledger.AddCheckpointRequest) (int, string) {
	t.Helper()
	body, resp, err := from.Federation.Client.MakeFullRequest(t.Context(), federation.RequestParams{
		ServerName:   to.Config.ServerName,
		Method:       http.MethodPost,
		Path:         mautrix.BaseURLPath{"_matrixos", "ledger", "v1", "witness", "add-checkpoint"},
		Authenticate: true,
		RequestJSON:  req,
	})
	if resp == nil {
		t.Fatalf("add-checkpoint: %v", err)
	}
	return resp.StatusCode, string(body)
}

// TestWitnessDetectsFork: a witness cosigns a log's checkpoints only while
// each is consistent with the last one it cosigned (answering the sizes
// C2SP tlog-witness names); a second checkpoint of the same size with
// another root, or one whose consistency proof fails, both signed with the
// log's key, is refused and raises an alert (a metric, a server notice to
// the admins, a stored alert that outlives a restart); bad requests get
// 4xx.
func TestWitnessDetectsFork(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testWitnessDetectsFork(t, engine) })
	}
}

func testWitnessDetectsFork(t *testing.T, engine testnode.Engine) {
	ca := testnode.NewCA(t)
	logNode := testnode.StartFederating(t, testnode.SQLite, ca)
	wit := testnode.StartFederating(t, engine, ca, ledgerAll)
	admin := wit.RegisterAdmin("admin")
	f := newForger(t, logNode)
	wkey := wit.Witness.PublicKey
	ask := func(old, size uint64, tree *testonly.Tree) (int, string) {
		return addCheckpoint(t, logNode, wit, ledger.AddCheckpointRequest{LogKey: f.vkey, Body: f.request(t, tree, old, size)})
	}
	// A server that shares no logged room with the witness is refused.
	if status, answer := ask(0, 3, newTree("a", "b", "c")); status != http.StatusForbidden {
		t.Fatalf("add-checkpoint from a stranger: %d %s, want 403", status, answer)
	}
	shareLoggedRoom(t, logNode, wit)
	wantCosigned := func(status int, answer string, tree *testonly.Tree, size uint64) {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("add-checkpoint of size %d: %d %s", size, status, answer)
		}
		v, err := fnote.NewVerifierForCosignatureV1(wkey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open([]byte(f.checkpoint(t, tree, size)+answer), note.VerifierList(v)); err != nil {
			t.Fatalf("the answer %q is not a cosignature by %s: %v", answer, wkey, err)
		}
	}

	honest := newTree("a", "b", "c", "d", "e", "f", "g", "h")
	status, answer := ask(0, 3, honest)
	wantCosigned(status, answer, honest, 3)
	// The log lost track: the witness tells it the size it knows.
	if status, answer := ask(0, 5, honest); status != http.StatusConflict || answer != "3\n" {
		t.Fatalf("old size 0 after 3 was cosigned: %d %q, want 409 \"3\\n\"", status, answer)
	}
	status, answer = ask(3, 5, honest)
	wantCosigned(status, answer, honest, 5)
	// The same checkpoint again is cosigned again.
	status, answer = ask(5, 5, honest)
	wantCosigned(status, answer, honest, 5)

	metric := func() float64 { return testutil.ToFloat64(wit.Witness.Collectors()[0]) }
	if len(mustAlerts(t, wit)) != 0 || metric() != 0 {
		t.Fatal("alerts before any fork")
	}
	// A fork: another tree of the same size, signed by the log.
	fork := newTree("a", "b", "c", "d", "X", "f", "g", "h")
	if status, answer := ask(5, 5, fork); status != http.StatusConflict || answer != "5\n" {
		t.Fatalf("same size, other root: %d %q, want 409 \"5\\n\"", status, answer)
	}
	// A larger checkpoint of the forked tree: its proof from 5 fails.
	if status, answer := ask(5, 8, fork); status != http.StatusUnprocessableEntity {
		t.Fatalf("inconsistent checkpoint: %d %q, want 422", status, answer)
	}
	alerts := mustAlerts(t, wit)
	if len(alerts) != 2 || alerts[0].Origin != f.origin || metric() != 2 {
		t.Fatalf("alerts %+v, metric %v; want two for %s", alerts, metric(), f.origin)
	}
	kinds := []string{alerts[0].Kind, alerts[1].Kind}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{ledger.AlertInconsistent, ledger.AlertSameSizeOtherRoot}) {
		t.Fatalf("alert kinds %v", kinds)
	}
	// The same fork shown again raises no new alert.
	ask(5, 5, fork)
	if metric() != 2 {
		t.Fatalf("metric %v after the same fork again, want 2", metric())
	}
	// The witness still holds the honest tree at 5: it goes on from there.
	status, answer = ask(5, 8, honest)
	wantCosigned(status, answer, honest, 8)

	// The admin got a server notice.
	sync := testnode.Call(t, admin, "GET", "/_matrix/client/v3/sync?timeout=0", nil).JSON(t)
	invites, _ := sync["rooms"].(map[string]any)["invite"].(map[string]any)
	if len(invites) != 1 {
		t.Fatalf("want the notices room's invite, sync has %v", sync["rooms"])
	}
	for r := range invites {
		if _, err := admin.JoinRoomByID(t.Context(), id.RoomID(r)); err != nil {
			t.Fatal(err)
		}
		msgs, err := admin.Messages(t.Context(), id.RoomID(r), "", "", mautrix.DirectionBackward, nil, 20)
		if err != nil {
			t.Fatal(err)
		}
		// Two alerts, one notice: the admins hear of a log's alerts at
		// most once an hour.
		if n := alertNotices(msgs.Chunk); n != 1 {
			t.Fatalf("%d alert notices among %d events, want 1", n, len(msgs.Chunk))
		}
	}

	badRequests(t, logNode, wit, f, honest)

	// A log that forks again and again fills neither the database nor
	// the admins' rooms: at most 50 alerts are kept for it.
	for i := range 60 {
		ask(8, 8, newTree("a", "b", "c", "d", "e", "f", "g", fmt.Sprint("fork ", i)))
	}
	if n := len(mustAlerts(t, wit)); n != 50 || metric() != 50 {
		t.Fatalf("%d alerts kept after 60 more forks (metric %v), want 50", n, metric())
	}

	// The alerts and the witnessed state outlive a restart.
	wit = wit.Restart()
	if len(mustAlerts(t, wit)) != 50 || testutil.ToFloat64(wit.Witness.Collectors()[0]) != 50 {
		t.Fatal("alerts lost in a restart")
	}
	honest.AppendData([]byte("i"))
	if status, answer := addCheckpoint(t, logNode, wit, ledger.AddCheckpointRequest{LogKey: f.vkey, Body: f.request(t, honest, 0, 9)}); status != http.StatusConflict || answer != "8\n" {
		t.Fatalf("after a restart: %d %q, want 409 \"8\\n\"", status, answer)
	}
}

// shareLoggedRoom has a user of logNode create a room that a user of wit
// joins: wit (started with ledger: all) logs it, so logNode is a server it
// witnesses. logNode, with the default ledger setting and the room's
// ledger off, asks no one to cosign its real log.
func shareLoggedRoom(t testing.TB, logNode, wit *testnode.Node) {
	t.Helper()
	alice := logNode.Register("alice")
	testnode.CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "logged"})
	if _, err := wit.Register("bob").JoinRoom(t.Context(), "#logged:"+logNode.Config.ServerName, nil); err != nil {
		t.Fatalf("join the logged room: %v", err)
	}
}

// alertNotices counts the witness alert notices among events.
func alertNotices(events []*event.Event) int {
	n := 0
	for _, ev := range events {
		if body, _ := ev.Content.Raw["body"].(string); ev.Type == event.EventMessage && strings.Contains(body, "Ledger witness alert") {
			n++
		}
	}
	return n
}

func mustAlerts(t testing.TB, n *testnode.Node) []ledger.Alert {
	t.Helper()
	alerts, err := n.Witness.Alerts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return alerts
}

// badRequests: malformed add-checkpoint requests get 4xx, never 5xx, and
// change nothing.
func badRequests(t *testing.T, logNode, wit *testnode.Node, f *forger, tree *testonly.Tree) {
	cp := f.checkpoint(t, tree, 8)
	otherKey, err := ledger.PublicKey(ledger.EventsOrigin("other.example"), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		req    ledger.AddCheckpointRequest
		status int
	}{
		{"no empty line", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 8\n" + cp}, 400},
		{"no old line", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "8\n\n" + cp}, 400},
		{"leading zero", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 08\n\n" + cp}, 400},
		{"bad proof line", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 5\nnot base64!\n\n" + cp}, 400},
		{"too many proof lines", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 5\n" + strings.Repeat(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n", 64) + "\n" + cp}, 400},
		{"old larger than the checkpoint", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 9\n\n" + cp}, 400},
		{"proof from 0", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 0\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n\n" + cp}, 400},
		{"bad note", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 8\n\nnot a checkpoint\n"}, 403},
		{"bad signature", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 8\n\n" + strings.Replace(cp, "\n8\n", "\n9\n", 1)}, 403},
		{"old size not the one cosigned", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: "old 5\n\n" + cp}, 409},
		{"no log key", ledger.AddCheckpointRequest{Body: "old 8\n\n" + cp}, 403},
		{"another server's log", ledger.AddCheckpointRequest{LogKey: otherKey, Body: "old 0\n\n" + cp}, 403},
		{"huge body", ledger.AddCheckpointRequest{LogKey: f.vkey, Body: strings.Repeat("x", ledger.MaxWitnessRequestBytes)}, 413},
	} {
		if status, answer := addCheckpoint(t, logNode, wit, c.req); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, answer, c.status)
		}
	}
	// Not signed with X-Matrix, or not JSON.
	if r := wit.FederationDo(t, "POST", ledger.WitnessPrefix+"add-checkpoint", map[string]any{"log_key": f.vkey, "add_checkpoint": "old 0\n\n" + cp}); r.Status != http.StatusUnauthorized {
		t.Errorf("unauthenticated: %d %s", r.Status, r.Body)
	}
	if r := wit.FederationDo(t, "GET", ledger.WitnessPrefix+"key", nil); r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != wit.Witness.PublicKey {
		t.Errorf("witness key: %d %s", r.Status, r.Body)
	}
	if len(mustAlerts(t, wit)) != 2 {
		t.Error("a bad request raised an alert")
	}
}

// TestWitnessAlertsOnKeyChange: a checkpoint consistent with the one
// cosigned but signed by another key of the same log is cosigned, and
// raises one alert of kind key_changed (stored, counted, noticed to the
// admins) instead of replacing the pinned key silently.
func TestWitnessAlertsOnKeyChange(t *testing.T) {
	ca := testnode.NewCA(t)
	logNode := testnode.StartFederating(t, testnode.SQLite, ca)
	wit := testnode.StartFederating(t, testnode.SQLite, ca, ledgerAll)
	shareLoggedRoom(t, logNode, wit)
	f := newForger(t, logNode)
	tree := newTree("a", "b", "c", "d", "e")
	if status, answer := addCheckpoint(t, logNode, wit, ledger.AddCheckpointRequest{LogKey: f.vkey, Body: f.request(t, tree, 0, 3)}); status != http.StatusOK {
		t.Fatalf("first checkpoint: %d %s", status, answer)
	}
	if alerts := mustAlerts(t, wit); len(alerts) != 0 {
		t.Fatalf("alerts before the key changed: %+v", alerts)
	}

	_, newKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, vkey, err := ledger.NewSigner(f.origin, newKey)
	if err != nil {
		t.Fatal(err)
	}
	rotated := &forger{origin: f.origin, vkey: vkey, signer: signer}
	if status, answer := addCheckpoint(t, logNode, wit, ledger.AddCheckpointRequest{LogKey: vkey, Body: rotated.request(t, tree, 3, 5)}); status != http.StatusOK {
		t.Fatalf("checkpoint under the new key: %d %s", status, answer)
	}
	alerts := mustAlerts(t, wit)
	if len(alerts) != 1 || alerts[0].Kind != ledger.AlertKeyChanged || alerts[0].Origin != f.origin {
		t.Fatalf("alerts %+v, want one key_changed for %s", alerts, f.origin)
	}
	if !strings.Contains(alerts[0].Cosigned, f.origin+"\n3\n") || !strings.Contains(alerts[0].Presented, f.origin+"\n5\n") {
		t.Fatalf("alert checkpoints: %q then %q", alerts[0].Cosigned, alerts[0].Presented)
	}
	if got := testutil.ToFloat64(wit.Witness.Collectors()[0]); got != 1 {
		t.Fatalf("alerts metric %v, want 1", got)
	}
}
