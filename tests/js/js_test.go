// Package js runs the matrix-js-sdk end-to-end scenarios (scenario.mjs,
// e2ee.mjs with the SDK's Rust crypto, oauth.mjs, the OAuth 2.0 login, and
// sliding.mjs, simplified sliding sync)
// against a freshly built matrixos binary.
//
// The scenario needs node and the npm packages of this directory
// (`npm ci` in tests/js; `make test` runs it). Without them the test skips
// with the reason, unless CI or MATRIXOS_REQUIRE_JS=1 is set, where it
// fails instead.
package js

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildTags are the tags the Makefile builds with.
const buildTags = "goolm"

// TestMatrixJSSDKScenario builds cmd/matrixos, serves a node with open
// registration on a loopback port and runs scenario.mjs against it.
func TestMatrixJSSDKScenario(t *testing.T) {
	runScript(t, "scenario.mjs")
}

// TestMatrixJSSDKE2EE runs e2ee.mjs: two matrix-js-sdk clients with the
// SDK's Rust crypto (@matrix-org/matrix-sdk-crypto-wasm) set up
// cross-signing and a key backup and exchange Megolm-encrypted messages.
func TestMatrixJSSDKE2EE(t *testing.T) {
	runScript(t, "e2ee.mjs")
}

// TestMatrixJSSDKOAuth runs oauth.mjs: matrix-js-sdk's OAuth2 API
// discovers auth_metadata, registers a client, logs in through the node's
// HTML pages (the script follows them as a browser would), completes the
// code grant, refreshes by hand and on M_UNKNOWN_TOKEN, and logs out by
// revoking the tokens.
func TestMatrixJSSDKOAuth(t *testing.T) {
	runScript(t, "oauth.mjs")
}

// TestMatrixJSSDKSlidingSync runs sliding.mjs: matrix-js-sdk's SlidingSync
// (simplified sliding sync) drives a client through a room list of 200
// rooms grown by ranges, a room subscription, and the to_device, e2ee,
// account_data, typing and receipts extensions.
func TestMatrixJSSDKSlidingSync(t *testing.T) {
	runScript(t, "sliding.mjs")
}

// runScript builds cmd/matrixos, serves a node with open registration on a
// loopback port and runs the node script against it, failing the test with
// the script's output and the server's log when the script fails.
func runScript(t *testing.T, script string) {
	t.Helper()
	node := requireNode(t)

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("repo root: %v", err)
	}
	bin := buildServer(t, root)
	url, logs := startServer(t, bin)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), "MATRIXOS_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("node %s: %v\n--- script output ---\n%s", script, err, out)
		t.Logf("--- server log (last 200 lines) ---\n%s", tail(logs.String(), 200))
		return
	}
	t.Logf("%s output:\n%s", script, out)
}

// requireNode returns the path of node, skipping the test (failing it under
// CI) when node or the npm packages are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" || os.Getenv("MATRIXOS_REQUIRE_JS") == "1" {
			t.Fatalf("%s (CI or MATRIXOS_REQUIRE_JS=1 is set, so this is a failure)", msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found: %v", err)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "matrix-js-sdk", "package.json")); err != nil {
		missing("tests/js/node_modules is missing; run `npm ci` in tests/js: %v", err)
	}
	return node
}

// buildServer compiles cmd/matrixos into a temporary directory.
func buildServer(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "matrixos")
	cmd := exec.Command("go", "build", "-tags", buildTags, "-o", bin, "./cmd/matrixos")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/matrixos: %v\n%s", err, out)
	}
	return bin
}

// startServer runs `matrixos serve` on a free loopback port, waits until
// /_matrix/client/versions answers and returns the base URL and the
// server's combined output. The server is stopped when the test ends.
func startServer(t *testing.T, bin string) (string, *syncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "serve",
		"--data", t.TempDir(),
		"--listen", addr,
		"--server-name", "localhost",
		"--open-registration")
	cmd.Stdout = logs
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start matrixos: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { stopServer(t, cmd, exited) })

	url := "http://" + addr
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for stopServer
			t.Fatalf("matrixos exited before serving: %v\n%s", err, logs.String())
		default:
		}
		resp, err := client.Get(url + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, logs
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("matrixos did not answer GET /_matrix/client/versions within 30s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopServer interrupts the server and kills it if it does not exit in 10s.
func stopServer(t *testing.T, cmd *exec.Cmd, exited chan error) {
	t.Helper()
	if err := cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Logf("interrupt matrixos: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("matrixos did not exit 10s after SIGINT; killing it")
		cmd.Process.Kill()
		<-exited
	}
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
