package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/matrixos/matrixos/internal/spectest"
	"github.com/matrixos/matrixos/internal/testnode"
)

// probeOp is one client-server operation from endpoints.tsv.
type probeOp struct {
	method, path, operationID string
	auth                      string // yes, no, optional
	body                      string // json, binary, -
}

// probeExceptions lists operations deliberately allowed to answer
// M_UNRECOGNIZED, with the reason.
var probeExceptions = map[string]string{}

// loadProbeOps reads the non-deprecated client-server operations.
func loadProbeOps(t *testing.T) []probeOp {
	t.Helper()
	dir, err := spectest.Dir()
	if err != nil {
		t.Skip(err)
	}
	f, err := os.Open(filepath.Join(dir, "endpoints.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ops []probeOp
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		cols := strings.Split(sc.Text(), "\t")
		if first || len(cols) < 10 || cols[0] != "client-server" || cols[4] != "no" {
			continue
		}
		ops = append(ops, probeOp{method: cols[1], path: cols[2], operationID: cols[3], auth: cols[5], body: cols[9]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ops) < 100 {
		t.Fatalf("only %d operations in endpoints.tsv", len(ops))
	}
	return ops
}

// TestProbeEveryClientServerOperation sends a plausible request to every
// non-deprecated client-server operation in the spec and checks that the
// node serves it: no 404/405 M_UNRECOGNIZED and no 5xx.
func TestProbeEveryClientServerOperation(t *testing.T) {
	ops := loadProbeOps(t)
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	alice := n.Register("alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "probe", Preset: "public_chat", RoomAliasName: "probe"})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	sent, err := alice.SendText(ctx, room.RoomID, "hello")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	params := map[string]string{
		"roomId":        string(room.RoomID),
		"roomIdOrAlias": string(room.RoomID),
		"roomAlias":     "#probe:localhost",
		"eventId":       string(sent.EventID),
		"userId":        string(alice.UserID),
		"deviceId":      string(alice.DeviceID),
		"eventType":     "m.room.message",
		"type":          "org.example.probe",
		"stateKey":      "",
		"tag":           "u.probe",
		"kind":          "override",
		"ruleId":        ".m.rule.master",
		"receiptType":   "m.read",
		"relType":       "m.thread",
		"protocol":      "irc",
		"networkId":     "irc",
		"appserviceId":  "probe",
		"serverName":    "localhost",
		"mediaId":       "probe",
		"fileName":      "probe.txt",
		"filterId":      "0",
		"keyName":       "displayname",
		"idpId":         "probe",
		"version":       "1",
		"sessionId":     "probe",
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	for i, op := range ops {
		path := op.path
		for k, v := range params {
			path = strings.ReplaceAll(path, "{"+k+"}", url.PathEscape(v))
		}
		path = strings.ReplaceAll(path, "{txnId}", fmt.Sprintf("probe%d", i))
		if strings.Contains(path, "{") {
			t.Errorf("%s %s: no value for a path parameter", op.method, op.path)
			continue
		}
		target := n.URL + path
		if op.path == "/_matrix/client/v3/sync" || op.path == "/_matrix/client/v3/events" {
			target += "?timeout=0"
		}
		var body io.Reader
		switch op.body {
		case "json":
			body = strings.NewReader("{}")
		case "binary":
			body = bytes.NewReader([]byte("probe"))
		}
		req, err := http.NewRequestWithContext(ctx, op.method, target, body)
		if err != nil {
			t.Fatalf("%s %s: %v", op.method, op.path, err)
		}
		switch op.body {
		case "json":
			req.Header.Set("Content-Type", "application/json")
		case "binary":
			req.Header.Set("Content-Type", "text/plain")
		}
		if op.auth != "no" {
			req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", op.method, op.path, err)
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Errcode string `json:"errcode"`
		}
		json.Unmarshal(raw, &e)
		unrecognized := (resp.StatusCode == 404 || resp.StatusCode == 405) && e.Errcode == "M_UNRECOGNIZED"
		if reason, ok := probeExceptions[op.method+" "+op.path]; ok {
			t.Logf("%s %s: exception (%s): %d %s", op.method, op.path, reason, resp.StatusCode, raw)
			continue
		}
		if unrecognized || resp.StatusCode >= 500 {
			t.Errorf("%s %s (%s): %d %s", op.method, op.path, op.operationID, resp.StatusCode, raw)
		}
	}
}
