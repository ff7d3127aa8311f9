//go:build goolm

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/bridges/bridgetest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// TestBridgeEnableDisable: a bridge is enabled and disabled through the
// admin API and through `matrixos bridge` while the node runs, and the
// node started again runs the bridges enabled and not the others; the
// status shows the health, and disabling keeps the bridge's data.
func TestBridgeEnableDisable(t *testing.T) {
	kind := bridgetest.EchoKind("echo", 0, nil)
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	if err := n.Bridges.AddKind(ctx, kind); err != nil {
		t.Fatal(err)
	}
	admin := n.RegisterAdmin("admin")
	user := n.Register("user")
	data := n.Config.DataDir
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		args = append(args, "--data", data, "--server-name", n.Config.ServerName)
		if err := runBridge(args, []bridges.Kind{kind}, &out); err != nil {
			t.Fatalf("matrixos bridge %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}

	// The admin API, admins only.
	if code, _ := adminCall(t, n, user, "GET", "", nil); code != http.StatusForbidden {
		t.Errorf("a non-admin listed bridges: %d", code)
	}
	code, body := adminCall(t, n, admin, "GET", "", nil)
	if code != 200 || !strings.Contains(string(body), `"name":"echo"`) || !strings.Contains(string(body), `"enabled":false`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, _ := adminCall(t, n, admin, "POST", "/nosuch/enable", nil); code != http.StatusNotFound {
		t.Errorf("enable nosuch: %d", code)
	}
	if code, _ := adminCall(t, n, admin, "POST", "/Bad%21/enable", nil); code != http.StatusBadRequest {
		t.Errorf("enable Bad!: %d", code)
	}
	if code, body := adminCall(t, n, admin, "POST", "/echo/enable", nil); code != 200 {
		t.Fatalf("enable: %d %s", code, body)
	}
	waitBridge(t, n, admin, "running")
	if n.Appservices.Registry.ByID("bridge-echo") == nil {
		t.Error("the bridge's registration is not loaded")
	}
	if code, body := adminCall(t, n, admin, "POST", "/echo/disable", nil); code != 200 || !strings.Contains(string(body), `"state":"stopped"`) {
		t.Fatalf("disable: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(bridges.Dir(data, "echo"), "bridge.db")); err != nil {
		t.Errorf("disabling lost the database: %v", err)
	}

	// The CLI, while the node runs.
	out := cli("enable", "echo")
	if !strings.Contains(out, "bridge echo enabled") {
		t.Errorf("enable: %s", out)
	}
	waitBridge(t, n, admin, "running")
	out = cli("status", "echo")
	if !strings.Contains(out, "state:       running") || !strings.Contains(out, "recent log:") {
		t.Errorf("status:\n%s", out)
	}
	if out := cli("list"); !strings.Contains(out, "echo") || !strings.Contains(out, "true") {
		t.Errorf("list:\n%s", out)
	}

	// Across a restart: enabled stays enabled.
	n = n.Restart()
	if err := n.Bridges.AddKind(ctx, kind); err != nil {
		t.Fatal(err)
	}
	admin = n.Login(admin.UserID)
	waitBridge(t, n, admin, "running")
	cli("disable", "echo")
	waitBridge(t, n, admin, "stopped")
	n = n.Restart()
	if err := n.Bridges.AddKind(ctx, kind); err != nil {
		t.Fatal(err)
	}
	admin = n.Login(admin.UserID)
	if code, body := adminCall(t, n, admin, "GET", "/echo", nil); code != 200 || !strings.Contains(string(body), `"enabled":false`) || !strings.Contains(string(body), `"state":"stopped"`) {
		t.Errorf("after restart, disabled: %d %s", code, body)
	}
}

// adminCall calls /_matrixos/admin/v1/bridges+path as c.
func adminCall(t *testing.T, n *testnode.Node, c *mautrix.Client, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.URL+"/_matrixos/admin/v1/bridges"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// waitBridge waits until the admin API shows the echo bridge in state.
func waitBridge(t *testing.T, n *testnode.Node, admin *mautrix.Client, state string) {
	t.Helper()
	var last []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := adminCall(t, n, admin, "GET", "/echo", nil)
		var st bridges.Status
		if code == 200 && json.Unmarshal(body, &st) == nil && st.State == state {
			return
		}
		last = body
		if time.Now().After(deadline) {
			t.Fatalf("bridge echo not %s: %s", state, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
