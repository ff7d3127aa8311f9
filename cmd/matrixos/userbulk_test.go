package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserAddBulk: user add-bulk creates every listed account with its
// password (blanks inside kept) or a generated one written to a private
// file, and a list with a bad line creates none.
func TestUserAddBulk(t *testing.T) {
	data := t.TempDir()
	dir := t.TempDir()
	list := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(list, []byte("# staff\ncarol   carol-password\n\n@dave:localhost\nerin\tpass with spaces\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("frank frank-password\nbad!name secret-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--data", data, "--server-name", "localhost"}
	run(t, "", append([]string{"user", "list", "--init"}, args...)...)

	cmd := exec.Command(binary, append([]string{"user", "add-bulk", bad}, args...)...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "bad!name") {
		t.Fatalf("a list with a bad name: err %v, output %s; want a failure naming bad!name", err, out)
	}
	cmd = exec.Command(binary, append([]string{"user", "add-bulk", list}, args...)...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "dave") {
		t.Fatalf("dave without a password and no --generate-passwords: err %v, output %s", err, out)
	}
	if out := run(t, "", append([]string{"user", "list"}, args...)...); strings.TrimSpace(out) != "" {
		t.Fatalf("accounts created by refused lists:\n%s", out)
	}

	passwords := filepath.Join(dir, "passwords")
	cmd = exec.Command(binary, append([]string{"user", "add-bulk", bad, "--generate-passwords", "--output", passwords}, args...)...)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("a list with a bad name and --output: no failure, output %s", out)
	}
	if _, err := os.Stat(passwords); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed run left its --output file (stat: %v)", err)
	}
	run(t, "", append([]string{"user", "add-bulk", list, "--generate-passwords", "--output", passwords}, args...)...)
	out := run(t, "", append([]string{"user", "list"}, args...)...)
	for _, u := range []string{"@carol:localhost", "@dave:localhost", "@erin:localhost"} {
		if !strings.Contains(out, u+"\t") {
			t.Errorf("user list has no %s:\n%s", u, out)
		}
	}
	st, err := os.Stat(passwords)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("passwords file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(passwords)
	if err != nil {
		t.Fatal(err)
	}
	daveLine, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "@dave:localhost ")
	if !ok || strings.Contains(daveLine, "\n") || len(daveLine) < 20 {
		t.Fatalf("passwords file %q: want only dave's generated password", b)
	}

	s := startServer(t, "--data", data)
	logins := map[string]string{"carol": "carol-password", "dave": daveLine, "erin": "pass with spaces"}
	for user, pw := range logins {
		code, r := call(t, "POST", s.url+"/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": user}, "password": pw})
		if code != 200 {
			t.Errorf("log in as %s: %d %v", user, code, r)
		}
	}
}
