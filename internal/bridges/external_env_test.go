package bridges

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/bridgev2/status"
)

// TestExternalChildEnv: an external program, both when it writes its
// example config (-e) and when it runs, gets neither the node's secrets
// (registration shared secret, database URL) nor anything else of its
// environment but the allowlist, HOME (its directory) and ExternalEnv.
func TestExternalChildEnv(t *testing.T) {
	dir := t.TempDir()
	program := filepath.Join(dir, "fakebridge")
	script := `#!/bin/sh
if [ "$3" = -e ]; then env > "$ENV_OUT.e"; printf 'homeserver:\n    address: x\n' > "$2"; exit 0; fi
env > "$ENV_OUT.run"
exit 1
`
	if err := os.WriteFile(program, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MATRIXOS_REGISTRATION_SHARED_SECRET", "s3cret-review")
	t.Setenv("MATRIXOS_DATABASE", "postgres://u:pw@h/db")
	t.Setenv("LC_TIME", "C")
	envOut := filepath.Join(dir, "env")
	extra := []string{"ENV_OUT=" + envOut}
	files := Files{DataDir: dir, ServerName: "example.org", Name: "foo"}
	if err := writeExternal(context.Background(), files, program, extra); err != nil {
		t.Fatal(err)
	}
	m := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{DataDir: dir, ServerName: "example.org", ExternalEnv: extra})
	m.homeserverURL = "http://127.0.0.1:1"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.externalRunner("foo", program)(ctx, io.Discard, func() {}, func(status.BridgeState) {}); err == nil {
		t.Fatal("the program's exit 1 is not an error")
	}
	for _, run := range []string{".e", ".run"} {
		data, err := os.ReadFile(envOut + run)
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(strings.TrimSpace(string(data)), "\n")
		for _, secret := range []string{"s3cret-review", "u:pw@h"} {
			if strings.Contains(string(data), secret) {
				t.Errorf("%s: the environment holds %q", run, secret)
			}
		}
		for _, want := range []string{"HOME=" + Dir(dir, "foo"), "PATH=" + os.Getenv("PATH"), "LC_TIME=C", extra[0]} {
			if !slices.Contains(env, want) {
				t.Errorf("%s: the environment lacks %s:\n%s", run, want, data)
			}
		}
	}
}

// TestExternalFailedEnableLeavesNoRegistration: a program that cannot
// write its example config (/bin/true writes none, /bin/false fails)
// leaves no registration behind, which the node would load as a live
// appservice with tokens.
func TestExternalFailedEnableLeavesNoRegistration(t *testing.T) {
	for _, program := range []string{"/bin/true", "/bin/false"} {
		dir := t.TempDir()
		err := writeExternal(context.Background(), Files{DataDir: dir, ServerName: "example.org", Name: "foo"}, program, nil)
		if err == nil {
			t.Errorf("writeExternal(%s) succeeded", program)
		}
		if _, err := os.Stat(RegistrationFile(dir, "foo")); !os.IsNotExist(err) {
			t.Errorf("%s: registration left behind (stat: %v)", program, err)
		}
	}
}

// TestCheckProgramRefusesWritableByOthers: a program its group or
// everyone may write, or in such a directory, is refused; one in a
// directory with the sticky bit (as /tmp) is not.
func TestCheckProgramRefusesWritableByOthers(t *testing.T) {
	for _, tc := range []struct {
		name             string
		dirMode, program os.FileMode
		ok               bool
	}{
		{"owner only", 0o755, 0o755, true},
		{"group-writable program", 0o755, 0o775, false},
		{"world-writable program", 0o755, 0o757, false},
		{"world-writable directory", 0o777, 0o755, false},
		{"group-writable directory", 0o775, 0o755, false},
		{"sticky directory", 0o777 | os.ModeSticky, 0o755, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bin")
			program := filepath.Join(dir, "bridge")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(program, []byte("#!/bin/sh\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(program, tc.program); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			err := checkProgram(program)
			if tc.ok != (err == nil) {
				t.Errorf("checkProgram = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestExternalNotReadyIsStopped: a program that never answers its
// readiness endpoint is stopped after ReadyTimeout, and the run's error
// (the bridge's last_error) says it was not ready.
func TestExternalNotReadyIsStopped(t *testing.T) {
	dir := t.TempDir()
	program := filepath.Join(dir, "silentbridge")
	script := `#!/bin/sh
if [ "$3" = -e ]; then printf 'homeserver:\n    address: x\n' > "$2"; exit 0; fi
exec sleep 60
`
	if err := os.WriteFile(program, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	files := Files{DataDir: dir, ServerName: "example.org", Name: "foo"}
	if err := writeExternal(context.Background(), files, program, nil); err != nil {
		t.Fatal(err)
	}
	m := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{DataDir: dir, ServerName: "example.org", ReadyTimeout: 500 * time.Millisecond})
	m.homeserverURL = "http://127.0.0.1:1"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	err := m.externalRunner("foo", program)(ctx, io.Discard, func() { t.Error("started") }, func(status.BridgeState) {})
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("run = %v, want the program stopped as not ready", err)
	}
	if ctx.Err() != nil || time.Since(began) > 20*time.Second {
		t.Errorf("the run ended after %v", time.Since(began))
	}
}
