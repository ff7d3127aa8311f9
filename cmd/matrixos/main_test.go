package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "matrixos-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "matrixos")
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	// pgtest.RunMain ends in os.Exit, so a deferred RemoveAll would never
	// run: every run of this package left a 90 MB binary in $TMPDIR.
	code := m.Run()
	pgtest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("matrixos %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestUserCommands(t *testing.T) {
	data := t.TempDir()
	out := run(t, "supersecret1\n", "user", "add", "alice", "--admin", "--password-file", "-", "--data", data, "--init")
	if !strings.Contains(out, "@alice:localhost:8008") {
		t.Fatalf("user add: %s", out)
	}
	run(t, "supersecret2\n", "user", "add", "bob", "--password-file", "-", "--data", data)
	out = run(t, "", "user", "list", "--data", data)
	if !strings.Contains(out, "@alice:localhost:8008\tadmin") || !strings.Contains(out, "@bob:localhost:8008") {
		t.Fatalf("user list: %s", out)
	}
	run(t, "supersecret3\n", "user", "reset-password", "bob", "--password-file", "-", "--data", data)
	run(t, "", "user", "deactivate", "bob", "--data", data)
	out = run(t, "", "user", "list", "--data", data)
	if !strings.Contains(out, "@bob:localhost:8008\tdeactivated") {
		t.Fatalf("user list after deactivate: %s", out)
	}
	cmd := exec.Command(binary, "user", "add", "alice", "--password-file", "-", "--data", data)
	cmd.Stdin = strings.NewReader("supersecret1\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("adding a taken user should fail: %s", out)
	}
	if out := run(t, "", "version"); !strings.HasPrefix(out, "matrixos ") {
		t.Fatalf("version: %s", out)
	}
	out = run(t, "", "config", "--data", data, "--server-name", "example.org")
	if !strings.Contains(out, "server_name: example.org") {
		t.Fatalf("config: %s", out)
	}
}

// server is a matrixos process under test.
type server struct {
	cmd *exec.Cmd
	url string

	mu     sync.Mutex
	stdout strings.Builder
}

// waitStdout waits until the server's standard output contains want (the
// banner is printed in one write after "Client API:") and returns it.
func (s *server) waitStdout(t *testing.T, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		out := s.stdout.String()
		s.mu.Unlock()
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("server output has no %q:\n%s", want, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--listen", "127.0.0.1:0", "--server-name", "localhost", "--open-registration", "--log-level", "warn", "--rate-limit=false"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	s := &server{cmd: cmd}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.mu.Lock()
			s.stdout.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if u, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Client API:"); ok {
				found <- strings.TrimSpace(u)
			}
		}
	}()
	select {
	case u := <-found:
		s.url = u
		t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
		return s
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server did not start")
	}
	return nil
}

func call(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestAcknowledgedEventsSurviveKill9 sends a burst of messages from several
// senders, kills the server with SIGKILL in the middle, restarts it and
// checks that every event acknowledged with 200 is there.
func TestAcknowledgedEventsSurviveKill9(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			data := t.TempDir()
			args := []string{"--data", data}
			if engine == "postgres" {
				args = append(args, "--database", pgtest.Start(t))
			}
			s := startServer(t, args...)
			code, reg := call(t, "POST", s.url+"/_matrix/client/v3/register", "", map[string]any{
				"username": "burst", "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
			if code != 200 {
				t.Fatalf("register: %d %v", code, reg)
			}
			token := reg["access_token"].(string)
			code, room := call(t, "POST", s.url+"/_matrix/client/v3/createRoom", token, map[string]any{})
			if code != 200 {
				t.Fatalf("createRoom: %d %v", code, room)
			}
			roomID := room["room_id"].(string)

			var mu sync.Mutex
			var acked []string
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil && i < 2000; i++ {
						url := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/w%d-%d", s.url, roomID, w, i)
						code, resp := call(t, "PUT", url, token, map[string]string{"msgtype": "m.text", "body": "burst"})
						if code != 200 {
							return // the server is gone
						}
						mu.Lock()
						acked = append(acked, resp["event_id"].(string))
						mu.Unlock()
					}
				}()
			}
			time.Sleep(700 * time.Millisecond)
			s.cmd.Process.Signal(syscall.SIGKILL)
			s.cmd.Wait()
			wg.Wait()
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n == 0 {
				t.Fatal("no event was acknowledged before the kill")
			}
			s2 := startServer(t, args...)
			for _, evID := range acked {
				code, ev := call(t, "GET", s2.url+"/_matrix/client/v3/rooms/"+roomID+"/event/"+evID, token, nil)
				if code != 200 {
					t.Fatalf("acknowledged event %s lost after kill -9: %d %v", evID, code, ev)
				}
			}
			t.Logf("%d acknowledged events survived kill -9", n)
			// The room still works.
			code, _ = call(t, "PUT", s2.url+"/_matrix/client/v3/rooms/"+roomID+"/send/m.room.message/after", token, map[string]string{"msgtype": "m.text", "body": "after"})
			if code != 200 {
				t.Fatalf("send after restart: %d", code)
			}
		})
	}
}

// TestDeactivateWhileStopped: `matrixos user deactivate` on a stopped node
// revokes the account at once, and the node makes it leave its rooms when
// it starts.
func TestDeactivateWhileStopped(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, "--data", data)
	reg := func(name string) string {
		code, r := call(t, "POST", s.url+"/_matrix/client/v3/register", "", map[string]any{
			"username": name, "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
		if code != 200 {
			t.Fatalf("register %s: %d %v", name, code, r)
		}
		return r["access_token"].(string)
	}
	alice, bob := reg("alice"), reg("bob")
	code, room := call(t, "POST", s.url+"/_matrix/client/v3/createRoom", alice, map[string]any{"preset": "public_chat"})
	if code != 200 {
		t.Fatalf("createRoom: %d", code)
	}
	roomID := room["room_id"].(string)
	if code, _ := call(t, "POST", s.url+"/_matrix/client/v3/rooms/"+roomID+"/join", bob, map[string]any{}); code != 200 {
		t.Fatalf("join: %d", code)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	run(t, "", "user", "deactivate", "bob", "--data", data)
	s2 := startServer(t, "--data", data)
	if code, _ := call(t, "GET", s2.url+"/_matrix/client/v3/account/whoami", bob, nil); code != 401 {
		t.Fatalf("deactivated user's token still works: %d", code)
	}
	code, m := call(t, "GET", s2.url+"/_matrix/client/v3/rooms/"+roomID+"/state/m.room.member/@bob:localhost", alice, nil)
	if code != 200 || m["membership"] != "leave" {
		t.Fatalf("bob's membership after restart: %d %v", code, m)
	}
}

// fail runs matrixos expecting it to fail and returns its output.
func fail(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err == nil {
		t.Fatalf("matrixos %v succeeded, want an error:\n%s", args, out)
	}
	return string(out)
}

// TestBooleanFlagWord: "--open-registration false" turns registration off
// (it used to turn it on, ignoring "false" as a stray argument, and save
// that in the config file), and a stray argument is an error that writes
// nothing.
func TestBooleanFlagWord(t *testing.T) {
	data := t.TempDir()
	startServer(t, "--data", data, "--open-registration", "false")
	b, err := os.ReadFile(filepath.Join(data, "matrixos.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nopen_registration: false\n") {
		t.Errorf("config file after --open-registration false:\n%s", b)
	}
	if out := run(t, "", "config", "--data", data, "--open-registration", "true"); !strings.Contains(out, "\nopen_registration: true\n") {
		t.Errorf("config --open-registration true:\n%s", out)
	}

	fresh := filepath.Join(t.TempDir(), "data")
	out := fail(t, "serve", "--data", fresh, "--open-registration", "no")
	if !strings.Contains(out, `unexpected argument "no"`) {
		t.Errorf("stray argument: %s", out)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("a refused command created the data directory: %v", err)
	}
	fail(t, "config", "--data", data, "stray")
	fail(t, "user", "list", "--data", data, "stray")
	fail(t, "version", "stray")
}

// TestAdminCommandsNeedData: run where there is no node, an admin command
// fails and creates nothing (it used to create an empty data directory and
// succeed); --init creates one on purpose. A user of another server is
// refused (it used to become a local user).
func TestAdminCommandsNeedData(t *testing.T) {
	data := filepath.Join(t.TempDir(), "matrixos-data")
	out := fail(t, "user", "list", "--data", data)
	if !strings.Contains(out, "no Matrix OS database") || !strings.Contains(out, "--init") {
		t.Errorf("user list without data: %s", out)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("user list created the data directory: %v", err)
	}
	out = run(t, "supersecret1\n", "user", "add", "@carol:localhost:8008", "--password-file", "-", "--data", data, "--init")
	if !strings.Contains(out, "created @carol:localhost:8008") {
		t.Fatalf("user add with --init: %s", out)
	}
	cmd := exec.Command(binary, "user", "add", "@dave:other.server", "--password-file", "-", "--data", data)
	cmd.Stdin = strings.NewReader("supersecret1\n")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "not a user of this server") {
		t.Fatalf("user add of a remote user: %v %s", err, b)
	}
	if out := run(t, "", "user", "list", "--data", data); strings.Contains(out, "dave") || !strings.Contains(out, "@carol:localhost:8008") {
		t.Fatalf("user list: %s", out)
	}
}

// TestConfigHidesSecrets: matrixos config prints the database URL without
// its password and hides the registration shared secret.
func TestConfigHidesSecrets(t *testing.T) {
	out := run(t, "", "config", "--data", t.TempDir(), "--database", "postgres://matrixos:hunter2pass@db.example/matrixos", "--registration-shared-secret", "s3cr3tvalue")
	if strings.Contains(out, "hunter2pass") || strings.Contains(out, "s3cr3tvalue") {
		t.Fatalf("config shows a secret:\n%s", out)
	}
	if !strings.Contains(out, "database: postgres://matrixos:xxxxx@db.example/matrixos") {
		t.Fatalf("config hides the whole database setting:\n%s", out)
	}
}

// TestBanner: the banner warns about open registration and asks for a
// first admin only while there is none.
func TestBanner(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, "--data", data)
	out := s.waitStdout(t, "Create the first admin with:\n  "+binary+" user add admin --admin --data "+data+"\n")
	if !strings.Contains(out, "WARNING: open registration is on") {
		t.Errorf("no open registration warning:\n%s", out)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	run(t, "supersecret1\n", "user", "add", "admin", "--admin", "--password-file", "-", "--data", data)
	s = startServer(t, "--data", data, "--open-registration=false")
	out = s.waitStdout(t, "Database:")
	if strings.Contains(out, "first admin") || strings.Contains(out, "WARNING") {
		t.Errorf("banner with an admin and closed registration:\n%s", out)
	}
}

// TestDataFilesPrivate: in a data directory that already exists with mode
// 0755 (a Docker volume, systemd's StateDirectory) and a umask of 022, the
// node makes the directory private and creates every file 0600.
func TestDataFilesPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o022)
	s := startServer(t, "--data", data)
	syscall.Umask(old)
	if code, _ := call(t, "POST", s.url+"/_matrix/client/v3/register", "", map[string]any{
		"username": "alice", "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}}); code != 200 {
		t.Fatalf("register: %d", code)
	}
	st, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode %v, want 0700", perm)
	}
	err = filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, readable by others", path, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"matrixos.db", "matrixos.db-wal", "matrixos.db-shm", "signing.key", "matrixos.yaml"} {
		if _, err := os.Stat(filepath.Join(data, name)); err != nil {
			t.Errorf("expected %s: %v", name, err)
		}
	}
}

// TestBuildWithoutJSONv2SaysSo: built without GOEXPERIMENT=jsonv2, the
// first error names it (it used to be "build constraints exclude all Go
// files" in a dependency).
func TestBuildWithoutJSONv2SaysSo(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOEXPERIMENT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOEXPERIMENT=nojsonv2")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("built without jsonv2:\n%s", out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if !strings.Contains(first, "GOEXPERIMENT_jsonv2_is_needed_to_build_matrixos") {
		t.Fatalf("first error does not name GOEXPERIMENT=jsonv2:\n%s", out)
	}
}

// TestAdminCommandsReachRunningServer runs `matrixos user reset-password`
// and `user deactivate` beside a running server: the server refuses the
// revoked tokens at once (it trusted its token cache for 30 s), the new
// password logs in, and the deactivated user leaves its rooms at once (it
// used to wait for the next start).
func TestAdminCommandsReachRunningServer(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			args := []string{"--data", t.TempDir()}
			if engine == "postgres" {
				args = append(args, "--database", pgtest.Start(t))
			}
			s := startServer(t, args...)
			auth := func(path string, body map[string]any) string {
				code, r := call(t, "POST", s.url+"/_matrix/client/v3/"+path, "", body)
				if code != 200 {
					t.Fatalf("%s: %d %v", path, code, r)
				}
				return r["access_token"].(string)
			}
			reg := func(name string) string {
				return auth("register", map[string]any{"username": name, "password": "supersecret", "auth": map[string]string{"type": "m.login.dummy"}})
			}
			alice, bob := reg("alice"), reg("bob")
			code, room := call(t, "POST", s.url+"/_matrix/client/v3/createRoom", alice, map[string]any{"preset": "public_chat"})
			if code != 200 {
				t.Fatalf("createRoom: %d %v", code, room)
			}
			roomID := room["room_id"].(string)
			if code, r := call(t, "POST", s.url+"/_matrix/client/v3/rooms/"+roomID+"/join", bob, map[string]any{}); code != 200 {
				t.Fatalf("join: %d %v", code, r)
			}
			whoami := s.url + "/_matrix/client/v3/account/whoami"
			if code, r := call(t, "GET", whoami, bob, nil); code != 200 { // the server caches bob's token
				t.Fatalf("whoami: %d %v", code, r)
			}
			waitRefused := func(token string) {
				t.Helper()
				for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
					code, r := call(t, "GET", whoami, token, nil)
					if code == 401 && r["errcode"] == "M_UNKNOWN_TOKEN" {
						return
					}
					if time.Since(start) > 2*time.Second {
						t.Fatalf("the revoked token still gets %d %v after %v", code, r, time.Since(start))
					}
				}
			}

			run(t, "a new password\n", append([]string{"user", "reset-password", "bob", "--password-file", "-"}, args...)...)
			waitRefused(bob)
			login := func(password string) (int, map[string]any) {
				return call(t, "POST", s.url+"/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
					"identifier": map[string]string{"type": "m.id.user", "user": "bob"}, "password": password})
			}
			if code, _ := login("supersecret"); code != 403 {
				t.Fatalf("the old password after reset-password: %d, want 403", code)
			}
			code, r := login("a new password")
			if code != 200 {
				t.Fatalf("login with the new password: %d %v", code, r)
			}
			bob = r["access_token"].(string)

			run(t, "", append([]string{"user", "deactivate", "bob"}, args...)...)
			waitRefused(bob)
			member := s.url + "/_matrix/client/v3/rooms/" + roomID + "/state/m.room.member/@bob:localhost"
			for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
				code, m := call(t, "GET", member, alice, nil)
				if code == 200 && m["membership"] == "leave" {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("bob's membership %v after the CLI deactivated him: %d %v", time.Since(start), code, m)
				}
			}
		})
	}
}
