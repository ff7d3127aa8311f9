package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asRegistration is a registration file for appservice name (as_token
// "as-NAME", no url).
func asRegistration(name string) string {
	return fmt.Sprintf("id: %[1]s\nurl: null\nas_token: as-%[1]s\nhs_token: hs-%[1]s\nsender_localpart: %[1]sbot\nnamespaces: {}\n", name)
}

// TestAppserviceCommands: `matrixos appservice list` checks the files,
// and a running node loads a new one on `matrixos appservice reload` and
// on SIGHUP, without a restart.
func TestAppserviceCommands(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "appservices")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one.yaml", asRegistration("one"))
	write("bad.yaml", "id: [\n")
	s := startServer(t, "--data", data)

	out := run(t, "", "appservice", "list", "--data", data)
	if !strings.Contains(out, "one\t") || !strings.Contains(out, "bad.yaml refused") {
		t.Fatalf("appservice list: %s", out)
	}
	whoami := s.url + "/_matrix/client/v3/account/whoami"
	waitAccepted := func(token, user string) {
		t.Helper()
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			code, r := call(t, "GET", whoami, token, nil)
			if code == 200 && r["user_id"] == user {
				return
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: whoami %d %v", token, code, r)
			}
		}
	}
	waitAccepted("as-one", "@onebot:localhost")

	write("two.yaml", asRegistration("two"))
	out = run(t, "", "appservice", "reload", "--data", data)
	if !strings.Contains(out, "2 registration(s) will load") {
		t.Fatalf("appservice reload: %s", out)
	}
	waitAccepted("as-two", "@twobot:localhost")

	write("three.yaml", asRegistration("three"))
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitAccepted("as-three", "@threebot:localhost")
}
