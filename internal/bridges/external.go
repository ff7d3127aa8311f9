package bridges

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"
	mautrixas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrixos/matrixos/internal/accounts"
)

// External bridges are mautrix bridgev2 programs (mautrix-whatsapp, ...)
// run as child processes. Enabling one writes the registration as for a
// built-in bridge and a config made from the program's own example config
// (`-e`); the manager sets, in that config, what must match the node
// before each start, runs the program with `-c config.yaml` in the
// bridge's directory and takes its stdout and stderr into the bridge's
// log. The program counts as started once its appservice listener
// answers /_matrix/mau/ready.

// externalStopWait is how long a child gets to exit after SIGTERM before
// it is killed.
const externalStopWait = 15 * time.Second

// writeExternal writes, unless it exists, an external bridge's config,
// then its registration: a program that cannot write its example config
// leaves no registration (no appservice the node would load) behind.
// extraEnv is added to the program's environment.
func writeExternal(ctx context.Context, f Files, binary string, extraEnv []string) error {
	if err := checkProgram(binary); err != nil {
		return err
	}
	if err := os.MkdirAll(Dir(f.DataDir, f.Name), 0o700); err != nil {
		return err
	}
	if err := writeExternalConfig(ctx, f, binary, extraEnv); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(RegistrationFile(f.DataDir, f.Name)), 0o700); err != nil {
		return err
	}
	return f.writeRegistration()
}

// writeExternalConfig writes, unless it exists, the config of an external
// bridge from the program's example config (-e).
func writeExternalConfig(ctx context.Context, f Files, binary string, extraEnv []string) error {
	dir := Dir(f.DataDir, f.Name)
	path := ConfigFile(f.DataDir, f.Name)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + ".example"
	os.Remove(tmp)
	defer os.Remove(tmp)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "-c", tmp, "-e")
	cmd.Dir = dir
	cmd.Env = childEnv(dir, extraEnv)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s -e (write its example config): %w\n%s", binary, err, out)
	}
	root, err := readYAML(tmp)
	if err != nil {
		return fmt.Errorf("%s's example config: %w", binary, err)
	}
	perms := map[string]string{f.ServerName: "user"}
	for _, a := range f.Admins {
		perms[string(a)] = "admin"
	}
	set(root, perms, "bridge", "permissions")
	set(root, "!"+f.Name, "bridge", "command_prefix")
	for _, key := range []string{"allow", "default", "appservice", "msc4190"} {
		set(root, true, "encryption", key)
	}
	set(root, accounts.RandomToken("", 32), "encryption", "pickle_key")
	set(root, "disable", "provisioning", "shared_secret")
	set(root, "info", "logging", "min_level")
	set(root, []map[string]string{{"type": "stdout", "format": "json"}}, "logging", "writers")
	return writeYAML(path, root)
}

// inheritedEnv are the variables of the node's environment an external
// program gets; LC_* and SSL_CERT_* are matched by prefix. The rest (the
// registration shared secret, the database URL, ...) is the node's own.
var inheritedEnv = []string{"PATH", "LANG", "TZ", "TMPDIR", "LC_", "SSL_CERT_"}

// childEnv is the environment of an external program run in dir: the
// inheritedEnv of the node's, HOME=dir, then extra.
func childEnv(dir string, extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		for _, allowed := range inheritedEnv {
			if key == allowed || strings.HasSuffix(allowed, "_") && strings.HasPrefix(key, allowed) {
				env = append(env, kv)
				break
			}
		}
	}
	env = append(env, "HOME="+dir)
	return append(env, extra...)
}

// checkProgram refuses a path that is not an executable file, or one that
// others could replace: a program, or a directory above it, that its
// group or everyone may write (a directory with the sticky bit, as /tmp,
// excepted: there only a file's owner may rename it).
func checkProgram(binary string) error {
	if !filepath.IsAbs(binary) {
		return fmt.Errorf("%w: --binary %s: give the program's absolute path", ErrInvalid, binary)
	}
	info, err := os.Stat(binary)
	if err != nil {
		return fmt.Errorf("%w: --binary: %w", ErrInvalid, err)
	}
	if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: --binary %s is not an executable file", ErrInvalid, binary)
	}
	if info.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: --binary %s may be written by others (mode %v): make it writable by its owner only", ErrInvalid, binary, info.Mode().Perm())
	}
	for dir := filepath.Dir(binary); ; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("%w: --binary: %w", ErrInvalid, err)
		}
		if info.Mode().Perm()&0o022 != 0 && info.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%w: --binary %s: its directory %s may be written by others (mode %v)", ErrInvalid, binary, dir, info.Mode().Perm())
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// prepareExternal sets in the external bridge's config what must match
// the node and its registration.
func prepareExternal(dataDir, serverName, name, homeserverURL string) (*mautrixas.Registration, error) {
	reg, err := mautrixas.LoadRegistration(RegistrationFile(dataDir, name))
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	u, err := url.Parse(reg.URL)
	if err != nil {
		return nil, fmt.Errorf("registration url %q: %w", reg.URL, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return nil, fmt.Errorf("registration url %q has no port", reg.URL)
	}
	path := ConfigFile(dataDir, name)
	root, err := readYAML(path)
	if err != nil {
		return nil, err
	}
	dir := Dir(dataDir, name)
	for _, kv := range []struct {
		value any
		path  []string
	}{
		{homeserverURL, []string{"homeserver", "address"}},
		{serverName, []string{"homeserver", "domain"}},
		{"standard", []string{"homeserver", "software"}},
		{false, []string{"homeserver", "websocket"}},
		{reg.URL, []string{"appservice", "address"}},
		{u.Hostname(), []string{"appservice", "hostname"}},
		{port, []string{"appservice", "port"}},
		{reg.ID, []string{"appservice", "id"}},
		{reg.SenderLocalpart, []string{"appservice", "bot", "username"}},
		{reg.AppToken, []string{"appservice", "as_token"}},
		{reg.ServerToken, []string{"appservice", "hs_token"}},
		{name + "_{{.}}", []string{"appservice", "username_template"}},
		{true, []string{"appservice", "ephemeral_events"}},
		{"sqlite3-fk-wal", []string{"database", "type"}},
		{"file:" + filepath.Join(dir, "bridge.db") + "?_txlock=immediate", []string{"database", "uri"}},
	} {
		set(root, kv.value, kv.path...)
	}
	return reg, writeYAML(path, root)
}

// externalRunner runs an external bridge's program once.
func (m *Manager) externalRunner(name, binary string) runFunc {
	hsURL := m.homeserverURL
	return func(ctx context.Context, log io.Writer, started func(), onState func(status.BridgeState)) error {
		if err := checkProgram(binary); err != nil {
			return err
		}
		reg, err := prepareExternal(m.opts.DataDir, m.opts.ServerName, name, hsURL)
		if err != nil {
			return err
		}
		runCtx, stopRun := context.WithCancel(ctx)
		defer stopRun()
		cmd := exec.CommandContext(runCtx, binary, "-c", ConfigFile(m.opts.DataDir, name))
		cmd.Dir = Dir(m.opts.DataDir, name)
		cmd.Env = childEnv(cmd.Dir, m.opts.ExternalEnv)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = externalStopWait
		cmd.SysProcAttr = childProcAttr()
		// The child is killed when the thread that started it ends (a
		// killed node's included): this goroutine keeps that thread
		// until the child has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", binary, err)
		}
		exited := make(chan struct{})
		var notReady atomic.Bool
		go func() {
			if !waitReady(reg.URL, m.opts.ReadyTimeout, exited, started) {
				notReady.Store(true)
				stopRun()
			}
		}()
		err = cmd.Wait()
		close(exited)
		os.Chmod(ConfigFile(m.opts.DataDir, name), 0o600) // the program may rewrite it
		if ctx.Err() != nil {
			return nil
		}
		if notReady.Load() {
			return fmt.Errorf("the program was not ready (%s/_matrix/mau/ready) within %v: stopped it", reg.URL, m.opts.ReadyTimeout)
		}
		if err == nil {
			return errors.New("the program exited")
		}
		return fmt.Errorf("the program exited: %w", err)
	}
}

// waitReady polls the bridge's readiness endpoint until it answers 200
// (then calls started), the program exits or timeout passes. It reports
// false only for the timeout.
func waitReady(base string, timeout time.Duration, exited <-chan struct{}, started func()) bool {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-exited:
			return true
		case <-deadline.C:
			return false
		case <-tick.C:
		}
		resp, err := client.Get(base + "/_matrix/mau/ready")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			started()
			return true
		}
	}
}

// readYAML reads a YAML file as a document node.
func readYAML(path string) (*yaml.Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a YAML mapping", path)
	}
	return &doc, nil
}

// writeYAML writes a document node to a 0600 file.
func writeYAML(path string, doc *yaml.Node) error {
	data, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// set puts value at the path of mapping keys in the document, making the
// mappings that are missing.
func set(doc *yaml.Node, value any, path ...string) {
	node := doc.Content[0]
	for i, key := range path {
		var next *yaml.Node
		for j := 0; j+1 < len(node.Content); j += 2 {
			if node.Content[j].Value == key {
				next = node.Content[j+1]
				break
			}
		}
		if i == len(path)-1 {
			var v yaml.Node
			v.Encode(value)
			if next != nil {
				*next = v
			} else {
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &v)
			}
			return
		}
		if next == nil || next.Kind != yaml.MappingNode {
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if next != nil {
				*next = *m
			} else {
				node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, m)
				next = m
			}
		}
		node = next
	}
}
