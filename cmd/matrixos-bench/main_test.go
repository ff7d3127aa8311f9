package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/testnode"
)

func TestPercentile(t *testing.T) {
	d := func(ms ...int) []time.Duration {
		out := make([]time.Duration, len(ms))
		for i, m := range ms {
			out[i] = time.Duration(m) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single", d(7), 99, 7 * time.Millisecond},
		{"median of four", d(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", d(hundred...), 99, 99 * time.Millisecond},
		{"p100", d(1, 2, 3), 100, 3 * time.Millisecond},
		{"p0", d(1, 2, 3), 0, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--scenario", "send,wakeup"}, ""},
		{[]string{"--scenario", "nope"}, "unknown scenario"},
		{[]string{"--users", "50,200"}, ""},
		{[]string{"--users", "0"}, "positive"},
		{[]string{"--register", "shared-secret"}, "needs --shared-secret"},
		{[]string{"--register", "magic"}, "want open or shared-secret"},
		{[]string{"--senders", "0"}, "--senders"},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, &bytes.Buffer{})
		if tt.wantErr == "" && err != nil {
			t.Errorf("%v: %v", tt.args, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8008": true,
		"http://localhost:8008": true,
		"http://[::1]:8008":     true,
		"http://192.0.2.1:8008": false,
		"not a url":             false,
	} {
		if err := checkLoopback(raw); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}

// TestRunAgainstNode runs every scenario, scaled down, against an
// in-process node and checks the JSON lines.
func TestRunAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := testnode.Start(t, testnode.SQLite)
	var stdout, stderr bytes.Buffer
	args := []string{"--url", n.URL, "--json", "--pid", itoa(os.Getpid()),
		"--senders", "2", "--messages", "5", "--users", "3,4", "--rooms", "2", "--events", "3",
		"--iterations", "3", "--fanout-messages", "2", "--sync-iterations", "2", "--settle-timeout", "5s",
		"--scenario", "all,longpoll,sliding", "--connections", "20", "--longpoll-users", "2"}
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var line struct {
			Scenario string             `json:"scenario"`
			Errors   int                `json:"errors"`
			Metrics  map[string]float64 `json:"metrics"`
			Note     string             `json:"note"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if line.Errors != 0 {
			t.Errorf("%s: %d errors: %s", line.Scenario, line.Errors, line.Note)
		}
		seen[line.Scenario]++
		switch line.Scenario {
		case "send":
			if line.Metrics["events"] != 10 || line.Metrics["throughput_eps"] <= 0 {
				t.Errorf("send metrics: %v", line.Metrics)
			}
		case "wakeup":
			if line.Metrics["samples"] != 3 {
				t.Errorf("wakeup metrics: %v", line.Metrics)
			}
		case "fanout":
			if d := line.Metrics["deliveries"]; d != 6 && d != 8 {
				t.Errorf("fanout metrics: %v", line.Metrics)
			}
		case "sliding":
			if line.Metrics["initial_ms"] <= 0 || line.Metrics["wake_p99_ms"] <= 0 || line.Metrics["sync_wake_p99_ms"] <= 0 {
				t.Errorf("sliding metrics: %v", line.Metrics)
			}
		case "longpoll":
			if line.Metrics["returned"] != 20 {
				t.Errorf("longpoll metrics: %v", line.Metrics)
			}
		case "rss":
			if line.Metrics["idle_mib"] <= 0 {
				t.Errorf("rss metrics: %v", line.Metrics)
			}
		}
	}
	want := map[string]int{"send": 1, "wakeup": 1, "fanout": 2, "initialsync": 1, "longpoll": 1, "sliding": 1, "rss": 1}
	for s, c := range want {
		if seen[s] != c {
			t.Errorf("scenario %s: %d results, want %d\nstdout:\n%s", s, seen[s], c, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "SCENARIO") {
		t.Errorf("no table on stderr:\n%s", stderr.String())
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
