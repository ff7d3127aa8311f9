//go:build goolm

package bridges_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/testnode"
)

// fakeBridgeEnv makes the test binary play an external mautrix bridge
// (see fakeBridge) when it is set, to the path of a file counting its
// runs; fakeFailEnv is how many first runs exit at once with an error.
const (
	fakeBridgeEnv = "MATRIXOS_FAKE_BRIDGE_RUNS"
	fakeFailEnv   = "MATRIXOS_FAKE_BRIDGE_FAIL"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeBridgeEnv) != "" {
		os.Exit(fakeBridge(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeBridge is what a mautrix bridgev2 program does that the manager
// relies on: `-c FILE -e` writes an example config; `-c FILE` reads it,
// checks its as_token with the node (whoami as the bot), serves
// /_matrix/mau/ready on the appservice port and runs until SIGINT.
func fakeBridge(args []string) int {
	if len(args) < 2 || args[0] != "-c" {
		fmt.Fprintln(os.Stderr, "usage: fake -c CONFIG [-e]")
		return 2
	}
	path := args[1]
	if len(args) == 3 && args[2] == "-e" {
		example := "homeserver:\n    address: http://example.localhost:8008\n    domain: example.com\n" +
			"appservice:\n    address: http://localhost:29318\n    hostname: 127.0.0.1\n    port: 29318\n    as_token: generate\n    hs_token: generate\n" +
			"bridge:\n    permissions:\n        \"*\": relay\n" +
			"database:\n    type: postgres\n    uri: postgres://user:password@host/database\n" +
			"encryption:\n    allow: false\n    pickle_key: generate\n" +
			"logging:\n    min_level: debug\n    writers:\n        - type: file\n          filename: ./logs/bridge.log\n"
		if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	runs := countRun(os.Getenv(fakeBridgeEnv))
	if fail, _ := strconv.Atoi(os.Getenv(fakeFailEnv)); runs <= fail {
		fmt.Printf("fake bridge: run %d fails on purpose\n", runs)
		return 3
	}
	var cfg struct {
		Homeserver struct{ Address, Domain string }
		Appservice struct {
			Hostname string
			Port     int
			ASToken  string `yaml:"as_token"`
			Bot      struct{ Username string }
		}
	}
	data, err := os.ReadFile(path)
	if err == nil {
		err = yaml.Unmarshal(data, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake bridge: config:", err)
		return 1
	}
	client, err := mautrix.NewClient(cfg.Homeserver.Address, id.NewUserID(cfg.Appservice.Bot.Username, cfg.Homeserver.Domain), cfg.Appservice.ASToken)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	client.SetAppServiceUserID = true
	who, err := client.Whoami(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake bridge: whoami:", err)
		return 1
	}
	fmt.Printf("fake bridge: connected to homeserver as %s\n", who.UserID)
	l, err := net.Listen("tcp", net.JoinHostPort(cfg.Appservice.Hostname, strconv.Itoa(cfg.Appservice.Port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/mau/ready", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	go http.Serve(l, mux)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	fmt.Println("fake bridge: stopping")
	return 0
}

// countRun adds one to the count in the file and returns it.
func countRun(path string) int {
	data, _ := os.ReadFile(path)
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	n++
	os.WriteFile(path, []byte(strconv.Itoa(n)), 0o600)
	return n
}

// TestExternalBridge: `enable --binary` makes the config from the
// program's example config with the node's values, runs the program
// under supervision (its output in the bridge's log, a failed run started
// again), and disable stops the process.
func TestExternalBridge(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "runs")
	t.Setenv(fakeBridgeEnv, runs)
	t.Setenv(fakeFailEnv, "1")
	program, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	node := testnode.Start(t, testnode.SQLite)
	admin := node.RegisterAdmin("admin")
	m := startManager(t, node)
	ctx := context.Background()
	if _, err := m.Enable(ctx, "fake", program); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, "fake", bridges.StateRunning)
	if !st.External || st.Binary != program || st.Restarts != 1 || !strings.Contains(st.LastError, "exit status 3") {
		t.Errorf("status %+v", st)
	}
	logs := strings.Join(st.RecentLogs, "\n")
	if !strings.Contains(logs, "run 1 fails on purpose") || !strings.Contains(logs, "connected to homeserver as @fakebot:localhost") {
		t.Errorf("log:\n%s", logs)
	}

	reg := loadRegistration(t, node.Config.DataDir, "fake")
	var cfg struct {
		Homeserver struct{ Address, Domain string }
		Appservice struct {
			ASToken string `yaml:"as_token"`
			HSToken string `yaml:"hs_token"`
			Port    int
		}
		Database struct{ Type, URI string }
		Bridge   struct{ Permissions map[string]string }
		Logging  struct {
			Writers []map[string]string
		}
	}
	data, err := os.ReadFile(bridges.ConfigFile(node.Config.DataDir, "fake"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Homeserver.Address != node.URL || cfg.Homeserver.Domain != "localhost" ||
		cfg.Appservice.ASToken != reg.AppToken || cfg.Appservice.HSToken != reg.ServerToken ||
		cfg.Database.Type != "sqlite3-fk-wal" || !strings.Contains(cfg.Database.URI, filepath.Join(bridges.Dir(node.Config.DataDir, "fake"), "bridge.db")) ||
		cfg.Bridge.Permissions["localhost"] != "user" || cfg.Bridge.Permissions[string(admin.UserID)] != "admin" ||
		len(cfg.Logging.Writers) != 1 || cfg.Logging.Writers[0]["type"] != "stdout" {
		t.Errorf("config.yaml:\n%s", data)
	}

	ready := fmt.Sprintf("http://127.0.0.1:%d/_matrix/mau/ready", cfg.Appservice.Port)
	if resp, err := http.Get(ready); err != nil {
		t.Fatalf("the fake bridge does not answer: %v", err)
	} else {
		resp.Body.Close()
	}
	if _, err := m.Disable(ctx, "fake"); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Second}
	if resp, err := client.Get(ready); err == nil {
		resp.Body.Close()
		t.Error("the fake bridge still answers after disable")
	}
	if st, _ := m.Status(ctx, "fake"); !strings.Contains(strings.Join(st.RecentLogs, "\n"), "fake bridge: stopping") {
		t.Errorf("the program was not stopped with a signal:\n%s", strings.Join(st.RecentLogs, "\n"))
	}

	// Enabled again without naming the program (as the admin API does),
	// it runs the same program.
	if st, err := m.Enable(ctx, "fake", ""); err != nil || st.Binary != program {
		t.Fatalf("enable again: %+v %v", st, err)
	}
	waitState(t, m, "fake", bridges.StateRunning)
}
