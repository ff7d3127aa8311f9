package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
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
		{[]string{"--versus", "/bin/dendrite"}, "needs --spawn"},
		{[]string{"--versus", "/bin/dendrite", "--spawn", "/bin/matrixos"}, ""},
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
		"--senders", "2", "--send-rooms", "2", "--messages", "5", "--users", "3,4", "--rooms", "2", "--events", "3",
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
			if line.Metrics["events"] != 10 || line.Metrics["throughput_eps"] <= 0 || line.Metrics["unread_count"] != 10 {
				t.Errorf("send metrics: %v", line.Metrics)
			}
			if _, ok := line.Metrics["cpu_ms_per_op"]; !ok || line.Metrics["load_before"] < 0 {
				t.Errorf("send: no conditions (CPU per event, load average): %v", line.Metrics)
			}
		case "wakeup":
			if line.Metrics["samples"] != 3 || line.Metrics["lost"] != 0 {
				t.Errorf("wakeup metrics: %v", line.Metrics)
			}
		case "fanout":
			if d := line.Metrics["deliveries"]; (d != 6 && d != 8) || line.Metrics["lost"] != 0 {
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
			if _, ok := line.Metrics["cpu_ms_per_op"]; !ok {
				t.Errorf("longpoll: no CPU per wake-up: %v", line.Metrics)
			}
			if _, ok := line.Metrics["kib_per_connection"]; !ok {
				t.Errorf("longpoll: no memory per connection: %v", line.Metrics)
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
	if !strings.Contains(stderr.String(), "| send messages=5 rooms=2 senders=2 | throughput_eps |") {
		t.Errorf("no figure line for the send throughput on stderr:\n%s", stderr.String())
	}
}

// TestLedgerScenario: the ledger scenario runs send into rooms without
// and with the ledger on the same node, in alternating order over the
// runs, and the node logs the second kind's messages only.
func TestLedgerScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := testnode.Start(t, testnode.SQLite)
	var stdout, stderr bytes.Buffer
	args := []string{"--url", n.URL, "--json", "--senders", "2", "--send-rooms", "2", "--messages", "5",
		"--settle-timeout", "5s", "--scenario", "ledger", "--runs", "2"}
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	var order []string
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
		if line.Errors != 0 || line.Metrics["events"] != 10 {
			t.Errorf("%s: %d errors (%s), metrics %v", line.Scenario, line.Errors, line.Note, line.Metrics)
		}
		order = append(order, line.Scenario)
	}
	if want := []string{"send", "send_ledger", "send_ledger", "send"}; !slices.Equal(order, want) {
		t.Fatalf("scenarios %v, want %v", order, want)
	}
	for {
		more, err := n.Ledger.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	size, err := n.Ledger.Size(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Two runs into 2 rooms with the ledger on, each room's toggle, its 2
	// senders' joins and 5 messages from each: 32 entries; the rooms
	// without it add none.
	if size != 32 {
		t.Errorf("the log holds %d entries, want 32 (the ledger rooms' toggles, joins and messages)", size)
	}
}

func TestConditions(t *testing.T) {
	m := parseCPUInfo(strings.NewReader("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: x\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"))
	if m.CPU != "AMD EPYC" || m.Cores != 2 {
		t.Errorf("parseCPUInfo = %+v, want AMD EPYC with 2 cores", m)
	}
	if got := parseLoadAvg("0.42 0.31 0.20 1/123 4567\n"); got != 0.42 {
		t.Errorf("parseLoadAvg = %v, want 0.42", got)
	}
	if got := parseLoadAvg("garbage"); got != -1 {
		t.Errorf("parseLoadAvg(garbage) = %v, want -1", got)
	}
	prom := "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\nprocess_open_fds 9\n"
	if got, err := parseProm(strings.NewReader(prom)); err != nil || got["process_cpu_seconds_total"] != 12.5 || len(got) != 2 {
		t.Errorf("parseProm = %v, %v; want process_cpu_seconds_total 12.5 and process_open_fds", got, err)
	}
}

// TestStorageFigures: the window's figures from the server's metrics are
// the differences of its commit and checkpoint histograms and GC count;
// series the server lacks give no figure.
func TestStorageFigures(t *testing.T) {
	at := func(commits, fast, ckpts int, ckptSum float64, gcs int) map[string]float64 {
		text := fmt.Sprintf(`matrixos_db_commit_seconds_bucket{le="0.0064"} %d
matrixos_db_commit_seconds_bucket{le="0.0128"} %d
matrixos_db_commit_seconds_bucket{le="+Inf"} %d
matrixos_db_commit_seconds_count %d
matrixos_db_wal_checkpoint_seconds_sum %g
matrixos_db_wal_checkpoint_seconds_count %d
go_gc_duration_seconds_count %d
`, fast, fast, commits, commits, ckptSum, ckpts, gcs)
		m, err := parseProm(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	r := &result{}
	storageFigures(r, at(100, 90, 3, 0.010, 7), at(160, 145, 5, 0.0425, 10))
	want := map[string]float64{"commits": 60, "commits_over_12ms": 5, "checkpoints": 2, "checkpoint_ms": 32.5, "server_gc_cycles": 3}
	got := map[string]float64{}
	for _, m := range r.Metrics {
		got[m.Name] = m.Value
	}
	if !maps.Equal(got, want) {
		t.Errorf("storageFigures = %v, want %v", got, want)
	}
	r = &result{}
	storageFigures(r, map[string]float64{"go_goroutines": 3}, map[string]float64{"go_goroutines": 4})
	if len(r.Metrics) != 0 {
		t.Errorf("storageFigures without the series = %v, want none", r.Metrics)
	}
}

// TestFigures: figures are the median over the runs, with each run's
// value, the median CPU per operation beside them and the load average
// before the first run and after the last; conditions are not figures.
func TestFigures(t *testing.T) {
	run := func(eps, cpu, before, after float64) *result {
		r := &result{Scenario: "send", Params: map[string]any{"senders": 8}}
		r.add("throughput_eps", eps, "events/s")
		r.add("cpu_ms_per_op", cpu, "ms/event")
		r.add("load_before", before, "")
		r.add("load_after", after, "")
		return r
	}
	var out bytes.Buffer
	writeFigures(&out, figureConditions{Machine: machine{CPU: "AMD EPYC", Cores: 2}, LoadStart: 0.1, LoadEnd: 0.3, Command: "matrixos-bench --runs 3"},
		[]*result{run(900, 0.6, 0.1, 0.2), run(1000, 0.4, 0.2, 0.25), run(800, 0.5, 0.25, 0.3)})
	want := "| send senders=8 | throughput_eps | 900 events/s | 900 / 1000 / 800 | 0.500 ms/event | 0.10 → 0.30 |"
	if !strings.Contains(out.String(), want) {
		t.Errorf("figures:\n%s\nwant the line\n%s", out.String(), want)
	}
	if strings.Contains(out.String(), "| cpu_ms_per_op |") || strings.Contains(out.String(), "| load_before |") {
		t.Errorf("conditions printed as figures:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "median of 3 run(s)) on AMD EPYC, 2 cores") {
		t.Errorf("no machine line:\n%s", out.String())
	}
}

// TestRatios: a side-by-side run's figures are paired by scenario,
// parameters and metric across the two servers, CPU per operation
// included, as medians and their ratio; a figure of one server only is
// left out.
func TestRatios(t *testing.T) {
	run := func(server string, eps, cpu float64) *result {
		r := &result{Scenario: "send", Params: map[string]any{"senders": 8, "server": server}}
		r.add("throughput_eps", eps, "events/s")
		r.add("cpu_ms_per_op", cpu, "ms/event")
		r.add("load_before", 1, "")
		return r
	}
	only := &result{Scenario: "rss", Params: map[string]any{"server": "matrixos"}}
	only.add("idle_mib", 30, "MiB")
	var out bytes.Buffer
	writeRatios(&out, figureConditions{Machine: machine{CPU: "AMD EPYC", Cores: 2}, Command: "matrixos-bench --versus d"}, []*result{
		run("matrixos", 1000, 0.5), run("dendrite", 100, 5), run("dendrite", 300, 4),
		run("matrixos", 800, 0.4), run("matrixos", 900, 0.6), run("dendrite", 200, 6), only,
	}, "matrixos", "dendrite")
	for _, want := range []string{
		"| send senders=8 | throughput_eps | 900 events/s | 200 events/s | 0.22 |",
		"| send senders=8 | cpu_ms_per_op | 0.50 ms/event | 5 ms/event | 10.00 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ratios:\n%s\nwant the line\n%s", out.String(), want)
		}
	}
	for _, unwanted := range []string{"load_before", "idle_mib", "server=dendrite"} {
		if strings.Contains(out.String(), unwanted) {
			t.Errorf("ratios print %s:\n%s", unwanted, out.String())
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
