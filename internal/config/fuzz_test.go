package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// clearEnv hides MATRIXOS_* variables so Load sees only the fuzzed input.
func clearEnv(tb testing.TB) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MATRIXOS_") {
			v := os.Getenv(k)
			os.Unsetenv(k)
			tb.Cleanup(func() { os.Setenv(k, v) })
		}
	}
}

// FuzzLoadFile loads arbitrary config files: Load must not panic, and a
// config it accepts must come back unchanged from its Commented rendering.
func FuzzLoadFile(f *testing.F) {
	clearEnv(f)
	f.Add("# Comment.\nserver_name: localhost:8008\n\n# More.\nlisten: 127.0.0.1:8008\nrate_limit: true\n")
	for _, s := range []string{
		"", "server_name: example.org\nopen_registration: true\n", "access_token_lifetime: 1h30m\n",
		"access_token_lifetime: 3600000000000\n", "allow_private_networks: [10.0.0.0/8, \"::1/128\"]\n",
		"log_level: loud\n", "max_upload_bytes: -1\n", "server_name: [1, 2]\n", "listen: \"a: b # c\"\n",
		"server_name: \"new\\nline\"\n", "{", "- a\n- b\n", "server_name: &a x\nlisten: *a\n", "unknown_key: 1\n",
		"public_baseurl: \"https://x/#y\"\nregistration_shared_secret: \"'\\\"\"\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string) {
		path := filepath.Join(dir, "in.yaml")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := Load(&Flags{ConfigFile: path}, false)
		if err != nil || hasControl(c) {
			// YAML does not keep carriage returns and the like in plain
			// round trips; no real setting holds them.
			return
		}
		out := filepath.Join(dir, "out.yaml")
		if err := os.WriteFile(out, c.Commented(), 0o600); err != nil {
			t.Fatal(err)
		}
		again, _, err := Load(&Flags{ConfigFile: out}, false)
		if err != nil {
			t.Fatalf("rendering of an accepted config does not load: %v\ninput:\n%s\nrendered:\n%s", err, content, c.Commented())
		}
		again.DataDir = c.DataDir // not written to the file
		if !reflect.DeepEqual(normalize(c), normalize(again)) {
			t.Fatalf("config changed in a round trip:\n%+v\n%+v\nrendered:\n%s", c, again, c.Commented())
		}
	})
}

// hasControl reports whether a string setting holds a control character.
func hasControl(c Config) bool {
	for _, fl := range c.fields() {
		if fl.v.Kind() == reflect.String && strings.ContainsFunc(fl.v.String(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return true
		}
	}
	return false
}

// normalize treats an empty list like no list.
func normalize(c Config) Config {
	if len(c.AllowPrivateNetworks) == 0 {
		c.AllowPrivateNetworks = nil
	}
	if len(c.TrustedKeyServers) == 0 {
		c.TrustedKeyServers = nil
	}
	return c
}

// FuzzFlag sets one setting from the command line: any value is either
// refused with an error or applied.
func FuzzFlag(f *testing.F) {
	clearEnv(f)
	for _, s := range [][2]string{
		{"server-name", "example.org"}, {"open-registration", "true"}, {"open-registration", "maybe"},
		{"access-token-lifetime", "5m"}, {"access-token-lifetime", "5"}, {"max-upload-bytes", "1e3"},
		{"allow-private-networks", "10.0.0.0/8, ,192.168.0.0/16"}, {"log-level", "debug"}, {"data", ""},
	} {
		f.Add(s[0], s[1])
	}
	empty := filepath.Join(f.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		fs := flag.NewFlagSet("fuzz", flag.ContinueOnError)
		fs.SetOutput(discard{})
		flags := RegisterFlags(fs)
		if err := fs.Parse([]string{"--config", empty, "--" + name + "=" + value}); err != nil {
			return
		}
		c, _, err := Load(flags, false)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted an invalid config: %v", err)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
