package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestFirstStartWritesCommentedFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"--data", dir, "--server-name", "example.org", "--open-registration"}); err != nil {
		t.Fatal(err)
	}
	cfg, path, err := Load(flags, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "example.org" || !cfg.OpenRegistration || cfg.DataDir != dir {
		t.Fatalf("flags not applied: %+v", cfg)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "# The server name") {
		t.Errorf("config file has no comments:\n%s", b)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", st.Mode().Perm())
	}
	// The file round-trips and later starts read it.
	var back Config
	if err := yaml.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	flags2 := RegisterFlags(fs2)
	fs2.Parse([]string{"--data", dir})
	cfg2, _, err := Load(flags2, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.ServerName != "example.org" || !cfg2.OpenRegistration {
		t.Fatalf("second start lost settings: %+v", cfg2)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("server_name: file.example\nlisten: 127.0.0.1:1\n"), 0o600)
	t.Setenv("MATRIXOS_SERVER_NAME", "env.example")
	t.Setenv("MATRIXOS_DATA", dir)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	fs.Parse([]string{"--listen", "127.0.0.1:2"})
	cfg, _, err := Load(flags, false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "env.example" {
		t.Errorf("environment should beat the file: %q", cfg.ServerName)
	}
	if cfg.Listen != "127.0.0.1:2" {
		t.Errorf("flag should beat the file: %q", cfg.Listen)
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"bad yaml", "server_name: [\n"},
		{"bad level", "log_level: loud\n"},
		{"empty name", "server_name: ''\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, FileName), []byte(tc.file), 0o600)
			t.Setenv("MATRIXOS_DATA", dir)
			if _, _, err := Load(nil, false); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
