package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// federationURL starts a node with federation on (plain HTTP) and returns
// its federation listener's URL from the banner.
func federationURL(t *testing.T, data string) (*server, string) {
	t.Helper()
	s := startServer(t, "--data", data, "--federation", "--federation-listen", "127.0.0.1:0")
	out := s.waitStdout(t, "Federation:")
	for line := range strings.SplitSeq(out, "\n") {
		if u, ok := strings.CutPrefix(strings.TrimSpace(line), "Federation:"); ok {
			return s, strings.TrimSpace(u)
		}
	}
	t.Fatalf("no federation URL in the banner:\n%s", out)
	return nil, ""
}

func serverKeys(t *testing.T, base string) map[string]any {
	t.Helper()
	res, err := http.Get(base + "/_matrix/key/v2/server")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != 200 {
		t.Fatalf("key/v2/server: %d, %v", res.StatusCode, err)
	}
	return body
}

// TestKeyRotateCommand: matrixos key rotate gives the node a new signing
// key, and after a restart the node serves the old one in
// old_verify_keys; run where there is no node, it fails and creates
// nothing.
func TestKeyRotateCommand(t *testing.T) {
	data := t.TempDir()
	s, base := federationURL(t, data)
	before := serverKeys(t, base)
	var oldID string
	for k := range before["verify_keys"].(map[string]any) {
		oldID = k
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()

	out := run(t, "", "key", "rotate", "--data", data)
	if !strings.Contains(out, oldID+" is now an old verify key") {
		t.Fatalf("key rotate: %s", out)
	}
	_, base = federationURL(t, data)
	after := serverKeys(t, base)
	if _, ok := after["verify_keys"].(map[string]any)[oldID]; ok {
		t.Fatalf("the node still signs with %s after rotating: %v", oldID, after)
	}
	old, _ := after["old_verify_keys"].(map[string]any)[oldID].(map[string]any)
	if old["key"] != before["verify_keys"].(map[string]any)[oldID].(map[string]any)["key"] || old["expired_ts"] == nil {
		t.Fatalf("old_verify_keys after rotating: %v", after["old_verify_keys"])
	}

	missing := filepath.Join(t.TempDir(), "nothing")
	if out := fail(t, "key", "rotate", "--data", missing); !strings.Contains(out, "no signing key to rotate") {
		t.Errorf("key rotate without a node: %s", out)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("key rotate created the data directory: %v", err)
	}
	fail(t, "key", "--data", data)
	fail(t, "key", "rotate", "stray", "--data", data)
}
