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

// TestBooleanFlagValues: a boolean flag takes its value with = or as the
// next word; "--open-registration false" used to turn registration on and
// leave "false" as a stray argument.
func TestBooleanFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		wantOpen bool
		wantRest []string
	}{
		{[]string{"--open-registration"}, true, nil},
		{[]string{"--open-registration=false"}, false, nil},
		{[]string{"--open-registration", "false"}, false, nil},
		{[]string{"-open-registration", "FALSE"}, false, nil},
		{[]string{"--open-registration", "true", "--server-name", "example.org"}, true, nil},
		{[]string{"--server-name", "true", "--open-registration"}, true, nil},
		{[]string{"--open-registration", "stray"}, true, []string{"stray"}},
		{[]string{"stray", "--open-registration", "false"}, false, []string{"stray", "--open-registration", "false"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		RegisterFlags(fs)
		if err := Parse(fs, tc.args); err != nil {
			t.Errorf("Parse(%q): %v", tc.args, err)
			continue
		}
		open := fs.Lookup("open-registration").Value.String() == "true"
		if open != tc.wantOpen || strings.Join(fs.Args(), " ") != strings.Join(tc.wantRest, " ") {
			t.Errorf("Parse(%q): open_registration %v, rest %q; want %v, %q", tc.args, open, fs.Args(), tc.wantOpen, tc.wantRest)
		}
	}
}

// TestValidateNamesTheSetting: every bad value is refused at start-up with
// the setting's name and flag in the message.
func TestValidateNamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		setting, value string
	}{
		{"server_name", "bad_name!"},
		{"server_name", "HTTPS://Example.org/"},
		{"server_name", "example.org:99999"},
		{"server_name", "example.org:"},
		{"server_name", "[::1"},
		{"server_name", "[example.org]:80"},
		{"server_name", "300.1.1.1"},
		{"server_name", ""},
		{"listen", "8008"},
		{"listen", "127.0.0.1:http-alt"},
		{"metrics_listen", "nowhere"},
		{"public_baseurl", "matrix.example.org"},
		{"public_baseurl", "ftp://matrix.example.org"},
		{"database", "mysql://x"},
		{"database", "postgress://u@h/db"},
		{"log_level", "loud"},
		{"log_format", "xml"},
		{"default_room_version", "99"},
		{"default_room_version", ""},
		{"max_upload_bytes", "-5"},
		{"max_upload_bytes", "0"},
		{"media_quota_bytes", "-1"},
		{"access_token_lifetime", "-1h"},
		{"allow_private_networks", "10.0.0.0/8,not-a-range"},
		{"rate_limit_login_per_minute", "-1"},
		{"rate_limit_login_burst", "0"},
		{"rate_limit_register_per_minute", "-10"},
		{"rate_limit_register_burst", "-1"},
		{"rate_limit_send_per_minute", "-600"},
		{"rate_limit_send_burst", "-100"},
		{"rate_limit_upload_per_minute", "-1"},
		{"rate_limit_upload_burst", "0"},
		{"federation_listen", "8448"},
		{"tls_cert", "/nonexistent/cert.pem"},
		{"tls_key", "/nonexistent/key.pem"},
		{"federation_ca", "/nonexistent/ca.pem"},
		{"federation_ca", "/dev/null"},
		{"trusted_key_servers", "matrix.org,bad_name!"},
		{"ledger", "everything"},
		{"ledger", ""},
	} {
		t.Run(tc.setting+"="+tc.value, func(t *testing.T) {
			err := loadWithSetting(t, tc.setting, tc.value)
			if err == nil {
				t.Fatalf("%s %q accepted", tc.setting, tc.value)
			}
			if !strings.Contains(err.Error(), tc.setting+" (--"+FlagName(tc.setting)+")") {
				t.Errorf("error does not name %s: %v", tc.setting, err)
			}
		})
	}
}

// TestValidateAccepts: the forms the grammar and the docs allow pass.
func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		setting, value string
	}{
		{"server_name", "example.org"},
		{"server_name", "matrix.example.org:8448"},
		{"server_name", "localhost:8008"},
		{"server_name", "1.2.3.4"},
		{"server_name", "1.2.3.4:1234"},
		{"server_name", "[1234:5678::abcd]"},
		{"server_name", "[::1]:8008"},
		{"listen", "[::1]:8008"},
		{"listen", "127.0.0.1:0"},
		{"public_baseurl", "https://matrix.example.org/"},
		{"database", "postgres://u:p@localhost/db?sslmode=disable"},
		{"database", "postgresql://u@h/db"},
		{"database", "sqlite:/srv/matrixos.db"},
		{"database", "/srv/matrixos.db"},
		{"default_room_version", "10"},
		{"media_quota_bytes", "0"},
		{"rate_limit_send_per_minute", "0"},
		{"allow_private_networks", "10.0.0.0/8,fd00::/8"},
		{"federation", "true"},
		{"federation_listen", "127.0.0.1:8448"},
		{"trusted_key_servers", "matrix.org,127.0.0.1:8448"},
	} {
		t.Run(tc.setting+"="+tc.value, func(t *testing.T) {
			if err := loadWithSetting(t, tc.setting, tc.value); err != nil {
				t.Errorf("%s %q refused: %v", tc.setting, tc.value, err)
			}
		})
	}
}

// loadWithSetting loads a configuration in a fresh data directory with one
// setting given as its flag, and returns Load's error.
func loadWithSetting(t *testing.T, setting, value string) error {
	t.Helper()
	clearEnv(t)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := Parse(fs, []string{"--data", t.TempDir(), "--" + FlagName(setting) + "=" + value}); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(flags, false)
	return err
}
