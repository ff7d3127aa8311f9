//go:build goolm

package bridges_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	mautrixas "maunium.net/go/mautrix/appservice"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// startManager runs a manager of its own against a node, with the kinds
// and a short backoff.
func startManager(t *testing.T, node *testnode.Node, kinds ...bridges.Kind) *bridges.Manager {
	t.Helper()
	m := bridges.New(node.DB, slog.New(slog.NewTextHandler(io.Discard, nil)), bridges.Options{
		DataDir: node.Config.DataDir, ServerName: node.Config.ServerName, Kinds: kinds,
		Accounts: node.Accounts, ReloadAppservices: node.ReloadAppservices,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		PauseAppservice: node.AppserviceQueue.SetPaused,
		ExternalEnv:     []string{fakeBridgeEnv + "=" + os.Getenv(fakeBridgeEnv), fakeFailEnv + "=" + os.Getenv(fakeFailEnv)},
	})
	if err := m.Start(context.Background(), node.URL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// waitState waits until the bridge is in the state and returns its status.
func waitState(t *testing.T, m *bridges.Manager, name, state string) bridges.Status {
	t.Helper()
	var st bridges.Status
	testnode.WaitFor(t, 60*time.Second, name+" "+state, func() bool {
		var err error
		st, err = m.Status(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return st.State == state
	})
	return st
}

// TestSupervisorRestartsWithBackoff: a bridge whose connector fails to
// start four times is started again after 50, 100, 200 and 200 ms (the
// cap), then runs; its status and metrics show the restarts, the last
// error, bridgev2's reported state and its log. On both databases.
func TestSupervisorRestartsWithBackoff(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) { testSupervisorRestartsWithBackoff(t, engine) })
	}
}

func testSupervisorRestartsWithBackoff(t *testing.T, engine testnode.Engine) {
	node := testnode.Start(t, engine)
	var starts atomic.Int64
	m := startManager(t, node, bridgetest.EchoKind("flaky", 4, &starts))
	if _, err := m.Enable(context.Background(), "flaky", ""); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, "flaky", bridges.StateRunning)
	if st.Restarts != 4 || starts.Load() != 5 {
		t.Errorf("restarts = %d, connectors = %d; want 4 and 5", st.Restarts, starts.Load())
	}
	if !strings.Contains(st.LastError, "start 4 of 4 fails") {
		t.Errorf("last error = %q", st.LastError)
	}
	if st.SinceTS == 0 || !st.Enabled {
		t.Errorf("status %+v", st)
	}
	// bridgev2's own state reaches the status: no one has logged in yet.
	testnode.WaitFor(t, 30*time.Second, "the bridge's reported state", func() bool {
		st, _ = m.Status(context.Background(), "flaky")
		return st.BridgeState == "UNCONFIGURED"
	})
	logs := strings.Join(st.RecentLogs, "\n")
	var waits []string
	for _, m := range regexp.MustCompile(`starting again in (\S+)`).FindAllStringSubmatch(logs, -1) {
		waits = append(waits, m[1])
	}
	if strings.Join(waits, " ") != "50ms 100ms 200ms 200ms" {
		t.Errorf("backoffs %v, want 50ms 100ms 200ms 200ms; log:\n%s", waits, logs)
	}
	file, err := os.ReadFile(filepath.Join(st.Dir, "bridge.log"))
	if err != nil || !strings.Contains(string(file), "start 4 of 4 fails") {
		t.Errorf("bridge.log: %v\n%s", err, file)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	want := `
# HELP matrixos_bridge_restarts_total Times a bridge failed or exited and was started again.
# TYPE matrixos_bridge_restarts_total counter
matrixos_bridge_restarts_total{bridge="flaky"} 4
# HELP matrixos_bridge_up 1 while a bridge is running and connected to the node, else 0.
# TYPE matrixos_bridge_up gauge
matrixos_bridge_up{bridge="flaky"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	if _, err := m.Disable(context.Background(), "flaky"); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "flaky", bridges.StateStopped)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(want, `{bridge="flaky"} 1`, `{bridge="flaky"} 0`, 1))); err != nil {
		t.Error(err)
	}
}

// TestPanickingBridgeRestarts: a connector whose handler panics in a
// goroutine of its own fails its run instead of stopping the node: the
// supervisor starts it again with backoff (twice here, then it runs), the
// status names the panic, and the node answers /versions throughout.
func TestPanickingBridgeRestarts(t *testing.T) {
	node := testnode.Start(t, testnode.SQLite)
	var starts atomic.Int64
	m := startManager(t, node, bridgetest.PanickingEchoKind("crashy", 2, &starts))
	if _, err := m.Enable(context.Background(), "crashy", ""); err != nil {
		t.Fatal(err)
	}
	var st bridges.Status
	testnode.WaitFor(t, 60*time.Second, "crashy restarted twice and running", func() bool {
		var err error
		if st, err = m.Status(context.Background(), "crashy"); err != nil {
			t.Fatal(err)
		}
		return st.Restarts == 2 && st.State == bridges.StateRunning
	})
	if !strings.Contains(st.LastError, "panic: echo network: the handler of start 2 panicked") {
		t.Errorf("last error = %q, want the second run's panic", st.LastError)
	}
	resp, err := http.Get(node.URL + "/_matrix/client/versions")
	if err != nil {
		t.Fatalf("/versions after the panics: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/versions after the panics: %s", resp.Status)
	}
	if starts.Load() != 3 {
		t.Errorf("connectors started = %d, want 3", starts.Load())
	}
}

// TestBridgeFilesPrivate: the files of a bridge are 0600 in 0700
// directories, its tokens are long, random and differ from another
// bridge's, and enabling it again keeps them.
func TestBridgeFilesPrivate(t *testing.T) {
	node := testnode.Start(t, testnode.SQLite)
	m := startManager(t, node, bridgetest.EchoKind("one", 0, nil), bridgetest.EchoKind("two", 0, nil))
	ctx := context.Background()
	for _, name := range []string{"one", "two"} {
		if _, err := m.Enable(ctx, name, ""); err != nil {
			t.Fatal(err)
		}
		waitState(t, m, name, bridges.StateRunning)
	}
	data := node.Config.DataDir
	for _, path := range []string{
		bridges.RegistrationFile(data, "one"), bridges.ConfigFile(data, "one"),
		filepath.Join(bridges.Dir(data, "one"), "bridge.db"), filepath.Join(bridges.Dir(data, "one"), "bridge.log"),
	} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %o, want 600", path, perm)
		}
	}
	for _, dir := range []string{bridges.Dir(data, "one"), filepath.Join(data, "appservices")} {
		if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a 0700 directory", dir, info.Mode(), err)
		}
	}
	one, two := loadRegistration(t, data, "one"), loadRegistration(t, data, "two")
	token := regexp.MustCompile(`^(as|hs)_[A-Za-z0-9_-]{43}$`)
	for _, tok := range []string{one.AppToken, one.ServerToken, two.AppToken, two.ServerToken} {
		if !token.MatchString(tok) {
			t.Errorf("token %q is not a prefix and 32 random bytes", tok)
		}
	}
	if one.AppToken == two.AppToken || one.ServerToken == two.ServerToken || one.AppToken[3:] == one.ServerToken[3:] {
		t.Error("tokens repeat")
	}
	if one.URL == two.URL {
		t.Errorf("both bridges listen on %s", one.URL)
	}

	if _, err := m.Disable(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "one", bridges.StateStopped)
	if _, err := m.Enable(ctx, "one", ""); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "one", bridges.StateRunning)
	if again := loadRegistration(t, data, "one"); again.AppToken != one.AppToken {
		t.Error("enabling again replaced the tokens")
	}

	// Stopping the manager (the node's shutdown) stops the bridges: their
	// listeners close and their status says stopped.
	m.Stop()
	for _, reg := range []*mautrixas.Registration{one, two} {
		client := &http.Client{Timeout: time.Second}
		if resp, err := client.Get(reg.URL + "/_matrix/mau/ready"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after Stop", reg.ID)
		}
	}
	cli := bridges.New(node.DB, slog.New(slog.NewTextHandler(io.Discard, nil)), bridges.Options{
		DataDir: data, ServerName: node.Config.ServerName, Kinds: []bridges.Kind{bridgetest.EchoKind("one", 0, nil)},
	})
	if st, err := cli.Status(ctx, "one"); err != nil || st.State != bridges.StateStopped || !st.Enabled {
		t.Errorf("status as the CLI reads it after Stop: %+v %v", st, err)
	}
}

func loadRegistration(t *testing.T, data, name string) *mautrixas.Registration {
	t.Helper()
	reg, err := mautrixas.LoadRegistration(bridges.RegistrationFile(data, name))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestEnableRefusesBadInput: bad names, unknown bridges and built-in ones
// given a program are refused with ErrInvalid or ErrUnknownBridge.
func TestEnableRefusesBadInput(t *testing.T) {
	node := testnode.Start(t, testnode.SQLite)
	m := startManager(t, node, bridgetest.EchoKind("echo", 0, nil))
	ctx := context.Background()
	notProgram := filepath.Join(t.TempDir(), "plain.txt")
	if err := os.WriteFile(notProgram, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, binary string
		want         error
	}{
		{"Bad!", "", bridges.ErrInvalid},
		{"../x", "", bridges.ErrInvalid},
		{"nosuch", "", bridges.ErrUnknownBridge},
		{"echo", "/bin/true", bridges.ErrInvalid},
		{"ext", "relative/path", bridges.ErrInvalid},
		{"ext", "/nonexistent/program", bridges.ErrInvalid},
		{"ext", notProgram, bridges.ErrInvalid},
	} {
		if _, err := m.Enable(ctx, tc.name, tc.binary); !errors.Is(err, tc.want) {
			t.Errorf("Enable(%q, %q) = %v, want %v", tc.name, tc.binary, err, tc.want)
		}
	}
	if _, err := m.Disable(ctx, "nosuch"); !errors.Is(err, bridges.ErrUnknownBridge) {
		t.Errorf("Disable(nosuch) = %v", err)
	}
	if _, err := os.Stat(bridges.Dir(node.Config.DataDir, "ext")); err == nil {
		t.Error("a refused external bridge left a directory")
	}
}
