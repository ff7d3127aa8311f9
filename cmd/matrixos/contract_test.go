package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/contracts"
)

// buildPoll builds the poll example with clang (docs/contracts.md); the
// test is skipped without clang and wasm-ld unless MATRIXOS_REQUIRE_CLANG
// is set.
func buildPoll(t *testing.T) []byte {
	t.Helper()
	if _, err := exec.LookPath("wasm-ld"); err != nil {
		if os.Getenv("MATRIXOS_REQUIRE_CLANG") != "" {
			t.Fatalf("MATRIXOS_REQUIRE_CLANG is set but wasm-ld is missing: %v", err)
		}
		t.Skipf("contracts are built with clang and wasm-ld: %v", err)
	}
	out := filepath.Join(t.TempDir(), "poll.wasm")
	cmd := exec.Command("clang", "--target=wasm32", "-mbulk-memory", "-O2", "-nostdlib", "-Wl,--no-entry", "-Wl,--export-dynamic",
		"-o", out, "../../internal/contracts/examples/poll.c")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the poll: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContractReplayCommand: a poll attached to a room of a node with the
// ledger on answers two votes, and "matrixos contract replay" reruns it
// from the log and finds both results.
func TestContractReplayCommand(t *testing.T) {
	wasm := buildPoll(t)
	data := t.TempDir()
	s, token, _ := ledgerNode(t, data)
	code, room := call(t, "POST", s.url+"/_matrix/client/v3/createRoom", token, map[string]any{"preset": "public_chat"})
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
	req, err := http.NewRequest("PUT", s.url+"/_matrixos/admin/v1/contracts", bytes.NewReader(wasm))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+login["access_token"].(string))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var up map[string]string
	err = json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || up["module"] != contracts.ModuleHash(wasm) {
		t.Fatalf("upload: %d %v %v", resp.StatusCode, up, err)
	}
	base := s.url + "/_matrix/client/v3/rooms/" + url.PathEscape(roomID)
	if code, r := call(t, "PUT", base+"/state/"+contracts.StateType+"/poll", token, map[string]any{
		"module": up["module"], "events": []string{"org.matrixos.poll.vote"}}); code != 200 {
		t.Fatalf("attach: %d %v", code, r)
	}
	for i, option := range []string{"yes", "no"} {
		if code, r := call(t, "PUT", base+"/send/org.matrixos.poll.vote/v"+string(rune('0'+i)), token, map[string]string{"option": option}); code != 200 {
			t.Fatalf("vote: %d %v", code, r)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command(binary, "contract", "replay", roomID, "--data", data).CombinedOutput()
		if err == nil && strings.Contains(string(out), "2 calls replayed, 2 results logged") && strings.Contains(string(out), "every result replays") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("contract replay: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := fail(t, "contract", "replay", "--data", data); !strings.Contains(out, "usage: matrixos contract replay") {
		t.Fatalf("replay without a room: %s", out)
	}

	// An entry changed on disk no longer makes the checkpoint's root.
	s.cmd.Process.Kill() // the log on disk stays as the node left it
	s.cmd.Wait()
	bundles, err := filepath.Glob(filepath.Join(data, "ledger", "events", "tile", "entries", "*"))
	if err != nil || len(bundles) == 0 {
		t.Fatalf("entry bundles: %v %v", bundles, err)
	}
	if parts, _ := filepath.Glob(filepath.Join(data, "ledger", "events", "tile", "entries", "*.p", "*")); len(parts) > 0 {
		bundles = parts
	}
	for _, bundle := range bundles { // whichever of them the replay reads
		raw, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		at := bytes.LastIndex(raw, []byte(`"content_hash":"`)) + len(`"content_hash":"`) + 3
		raw[at] ^= 1 // another base64 character of the same length
		if err := os.WriteFile(bundle, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out := fail(t, "contract", "replay", roomID, "--data", data); !strings.Contains(out, "the log was changed") {
		t.Fatalf("replay of a changed log: %s", out)
	}
}
