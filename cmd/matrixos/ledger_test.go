package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"

	"github.com/matrixos/matrixos/internal/ledger"
)

// ledgerNode starts a node with the ledger on for every room and returns
// it with a user's token and a room of theirs.
func ledgerNode(t *testing.T, data string) (*server, string, string) {
	t.Helper()
	s := startServer(t, "--data", data, "--ledger", "all")
	code, reg := call(t, "POST", s.url+"/_matrix/client/v3/register", "", map[string]any{
		"username": "alice", "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
	if code != 200 {
		t.Fatalf("register: %d %v", code, reg)
	}
	token := reg["access_token"].(string)
	code, room := call(t, "POST", s.url+"/_matrix/client/v3/createRoom", token, map[string]any{})
	if code != 200 {
		t.Fatalf("createRoom: %d %v", code, room)
	}
	return s, token, room["room_id"].(string)
}

func sendMessage(t *testing.T, s *server, token, roomID, txn string) string {
	t.Helper()
	code, resp := call(t, "PUT", s.url+"/_matrix/client/v3/rooms/"+roomID+"/send/m.room.message/"+txn, token, map[string]string{"msgtype": "m.text", "body": txn})
	if code != 200 {
		t.Fatalf("send: %d %v", code, resp)
	}
	return resp["event_id"].(string)
}

// proveCLI runs "matrixos ledger prove" until the event is in a checkpoint
// (the node appends and signs within a second) and returns the bundle.
func proveCLI(t *testing.T, data, eventID string) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cmd := exec.Command(binary, "ledger", "prove", "--data", data, eventID)
		out, err := cmd.Output()
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger prove %s: %v\n%s", eventID, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLedgerCommands: "matrixos ledger prove" writes an event's bundle,
// "matrixos ledger verify" accepts it (with the key "matrixos ledger key"
// prints, or the one it names) and refuses, saying why, a bundle whose
// entry, index, root or signature was changed, one checked against another
// key, and anything that is not a bundle.
func TestLedgerCommands(t *testing.T) {
	data := t.TempDir()
	s, token, roomID := ledgerNode(t, data)
	eventID := sendMessage(t, s, token, roomID, "m1")
	bundle := proveCLI(t, data, eventID)
	dir := t.TempDir()
	file := filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(file, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(run(t, "", "ledger", "key", "--data", data))
	out := run(t, "", "ledger", "verify", "--key", key, file)
	if !strings.HasPrefix(out, "valid: event "+eventID+" of room "+roomID) {
		t.Fatalf("verify: %s", out)
	}
	run(t, string(bundle), "ledger", "verify", "-", "--key", key)
	if out := fail(t, "ledger", "verify", file); !strings.Contains(out, "not checked against a trusted key") {
		t.Fatalf("verify without --key: %s, want a refusal", out)
	}

	var b map[string]any
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, err := ledger.PublicKey(ledger.EventsOrigin("localhost"), other.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	cp := b["checkpoint"].(string)
	lines := strings.Split(cp, "\n")
	sigAt := strings.LastIndex(cp, " ") + 20 // past the key hash, inside the signature
	flipped := "A"
	if cp[sigAt] == 'A' {
		flipped = "B"
	}
	for _, tc := range []struct {
		name, want string
		change     func(b map[string]any)
		args       []string
	}{
		{"entry", "not in the checkpoint's tree", func(b map[string]any) {
			b["entry"] = strings.Replace(b["entry"].(string), `"content_hash":"`, `"content_hash":"X`, 1)
		}, nil},
		{"index", "not in the checkpoint's tree", func(b map[string]any) { b["index"] = b["index"].(float64) - 1 }, nil},
		{"root", "not signed by the log key", func(b map[string]any) {
			l := append([]string(nil), lines...)
			l[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
			b["checkpoint"] = strings.Join(l, "\n")
		}, nil},
		{"signature", "not signed by the log key", func(b map[string]any) {
			b["checkpoint"] = cp[:sigAt] + flipped + cp[sigAt+1:]
		}, nil},
		{"key named by the bundle", "not the trusted key", func(b map[string]any) { b["log_key"] = otherKey }, nil},
		{"trusted key", "not the trusted key", func(map[string]any) {}, []string{"--key", otherKey}},
		{"not a bundle", "not a proof bundle", func(b map[string]any) { clear(b); b["hello"] = 1 }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := map[string]any{}
			for k, v := range b {
				changed[k] = v
			}
			tc.change(changed)
			raw, _ := json.Marshal(changed)
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(f, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			args := tc.args
			if args == nil {
				args = []string{"--key", key}
			}
			out := fail(t, append([]string{"ledger", "verify", f}, args...)...)
			if !strings.Contains(out, "invalid: ") || !strings.Contains(out, tc.want) {
				t.Fatalf("verify of a bundle with a changed %s: %s, want %q", tc.name, out, tc.want)
			}
		})
	}
	if out := fail(t, "ledger", "prove", "--data", data, "$nosuchevent"); !strings.Contains(out, "not in the ledger") {
		t.Fatalf("prove of an unknown event: %s", out)
	}
}

// TestLedgerSurvivesKill9: a node with the ledger on for every room is
// killed with SIGKILL while it appends a burst of messages; restarted,
// every acknowledged event has a valid proof and the log, read as a tile
// client reads it, holds no event twice.
func TestLedgerSurvivesKill9(t *testing.T) {
	data := t.TempDir()
	s, token, roomID := ledgerNode(t, data)
	var mu sync.Mutex
	var acked []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 2000; i++ {
				u := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/w%d-%d", s.url, roomID, w, i)
				code, resp := call(t, "PUT", u, token, map[string]string{"msgtype": "m.text", "body": "burst"})
				if code != 200 {
					return // the server is gone
				}
				mu.Lock()
				acked = append(acked, resp["event_id"].(string))
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no event was acknowledged before the kill")
	}

	s2 := startServer(t, "--data", data, "--ledger", "all", "--ledger-public", "true") // the tile client below reads without a token
	last := sendMessage(t, s2, token, roomID, "after")
	key := strings.TrimSpace(run(t, "", "ledger", "key", "--data", data))
	proof := func(eventID string) *ledger.Verified {
		path := strings.NewReplacer("{roomId}", url.PathEscape(roomID), "{eventId}", url.PathEscape(eventID)).Replace(ledger.ProofPath)
		req, _ := http.NewRequest("GET", s2.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		json.NewDecoder(resp.Body).Decode(&raw)
		v, err := ledger.Verify(raw, key)
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("proof of %s after kill -9: %d %s (%v)", eventID, resp.StatusCode, raw, err)
		}
		return v
	}
	lastEntry := proof(last)
	for _, evID := range acked {
		proof(evID)
	}

	base, _ := url.Parse(s2.url + ledger.TilesPrefix)
	fetcher, err := client.NewHTTPFetcher(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	size := lastEntry.Checkpoint.Size
	seen := map[string]uint64{}
	for i := uint64(0); i < size; i += 256 {
		b, err := client.GetEntryBundle(context.Background(), fetcher.ReadEntryBundle, i/256, size)
		if err != nil {
			t.Fatal(err)
		}
		for j, raw := range b.Entries {
			e, err := ledger.ParseEntry(raw)
			if err != nil {
				t.Fatalf("entry %d: %v", i+uint64(j), err)
			}
			if at, dup := seen[e.EventID]; dup {
				t.Fatalf("%s is in the log twice: at %d and %d", e.EventID, at, i+uint64(j))
			}
			seen[e.EventID] = i + uint64(j)
		}
	}
	t.Logf("%d acknowledged events proved after kill -9; the log holds %d entries, none twice", len(acked), size)
}

// TestLedgerEnableCommand: "matrixos ledger enable ROOM_ID" with a server
// admin's token turns the room's ledger on through the running node (the
// state event sent as the room's creator), status shows it and disable
// turns it off; without a token, or as a user who is not an admin, the
// command fails saying why.
func TestLedgerEnableCommand(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, "--data", data)
	code, reg := call(t, "POST", s.url+"/_matrix/client/v3/register", "", map[string]any{
		"username": "alice", "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
	if code != 200 {
		t.Fatalf("register: %d %v", code, reg)
	}
	aliceToken := reg["access_token"].(string)
	code, room := call(t, "POST", s.url+"/_matrix/client/v3/createRoom", aliceToken, map[string]any{})
	if code != 200 {
		t.Fatalf("createRoom: %d %v", code, room)
	}
	roomID := room["room_id"].(string)
	run(t, "supersecret\n", "user", "add", "root", "--admin", "--password-file", "-", "--data", data)
	code, login := call(t, "POST", s.url+"/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "root"}, "password": "supersecret"})
	if code != 200 {
		t.Fatalf("admin login: %d %v", code, login)
	}
	ledgerCLI := func(token string, args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"ledger"}, args...)...)
		cmd.Env = append(os.Environ(), adminTokenEnv+"="+token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := ledgerCLI(login["access_token"].(string), "enable", roomID, "--data", data, "--url", s.url)
	if err != nil || !strings.Contains(out, "turned on: @alice:localhost sent $") {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	code, state := call(t, "GET", s.url+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/state/"+ledger.StateType+"/", aliceToken, nil)
	if code != 200 || state["enabled"] != true {
		t.Fatalf("the room's ledger state: %d %v", code, state)
	}
	if out, err := ledgerCLI(login["access_token"].(string), "status", roomID, "--data", data, "--url", s.url); err != nil || !strings.Contains(out, ": on (set by @alice:localhost") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, err := ledgerCLI(login["access_token"].(string), "disable", roomID, "--data", data, "--url", s.url); err != nil || !strings.Contains(out, "turned off") {
		t.Fatalf("disable: %v\n%s", err, out)
	}

	if out, err := ledgerCLI("", "enable", roomID, "--data", data, "--url", s.url); err == nil || !strings.Contains(out, adminTokenEnv) {
		t.Fatalf("enable without a token: %v\n%s", err, out)
	}
	if out, err := ledgerCLI(aliceToken, "enable", roomID, "--data", data, "--url", s.url); err == nil || !strings.Contains(out, "not a server admin") {
		t.Fatalf("enable as a user who is not an admin: %v\n%s", err, out)
	}
}

// TestLedgerExportCommand: "matrixos ledger export --contents ROOM_ID"
// writes the room's logged events with their proofs and contents, which
// "matrixos ledger verify" accepts, saying how many events it proves, and
// refuses once an event's content is changed.
func TestLedgerExportCommand(t *testing.T) {
	data := t.TempDir()
	s, token, roomID := ledgerNode(t, data)
	sendMessage(t, s, token, roomID, "m1")
	last := sendMessage(t, s, token, roomID, "m2")
	proveCLI(t, data, last) // the node has appended and signed up to it
	out := run(t, "", "ledger", "export", "--data", data, "--contents", roomID)
	var x ledger.Export
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	file := filepath.Join(t.TempDir(), "export.json")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(run(t, "", "ledger", "key", "--data", data))
	got := run(t, "", "ledger", "verify", "--key", key, file)
	if want := fmt.Sprintf("valid: %d events of room %s", len(x.Events), roomID); !strings.HasPrefix(got, want) || len(x.Events) < 3 {
		t.Fatalf("verify: %s, want %q (and the room's creation and messages)", got, want)
	}
	changed := strings.Replace(out, `"body": "m2"`, `"body": "m3"`, 1)
	if changed == out {
		t.Fatalf("no body m2 in the export:\n%s", out)
	}
	if err := os.WriteFile(file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := fail(t, "ledger", "verify", "--key", key, file); !strings.Contains(got, "does not match its content hash") {
		t.Fatalf("verify of a changed export: %s", got)
	}
}
