package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// machine is what the run was measured on, as /proc/cpuinfo says.
type machine struct {
	CPU   string
	Cores int
}

func (m machine) String() string { return fmt.Sprintf("%s, %d cores", m.CPU, m.Cores) }

// readMachine reads the CPU model and the number of logical CPUs.
func readMachine() machine {
	m := machine{CPU: "unknown CPU"}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return m
	}
	defer f.Close()
	return parseCPUInfo(f)
}

// parseCPUInfo reads the first "model name" and counts the "processor"
// entries of a /proc/cpuinfo text.
func parseCPUInfo(r io.Reader) machine {
	m := machine{CPU: "unknown CPU"}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			m.Cores++
		case "model name":
			if m.CPU == "unknown CPU" {
				m.CPU = strings.TrimSpace(value)
			}
		}
	}
	return m
}

// loadAverage reads the 1-minute load average (-1 when it cannot).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	return parseLoadAvg(string(b))
}

func parseLoadAvg(s string) float64 {
	first, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	v, err := strconv.ParseFloat(first, 64)
	if err != nil {
		return -1
	}
	return v
}

// serverCPU is the CPU time (user and system) the server has used so far:
// from /proc/<pid>/stat when its PID is known (--pid, --spawn), otherwise
// from its Prometheus process_cpu_seconds_total (--metrics). ok is false
// when neither is available.
func (b *bench) serverCPU(ctx context.Context) (d time.Duration, ok bool) {
	if b.o.PID != 0 {
		d, err := cpuTime(b.o.PID)
		return d, err == nil
	}
	if b.o.Metrics == "" {
		return 0, false
	}
	m, err := promSeries(ctx, b.o.Metrics)
	if err == nil && !hasSeries(m, "process_cpu_seconds_total") {
		err = fmt.Errorf("no process_cpu_seconds_total")
	}
	if err != nil {
		b.logf("server CPU from %s: %v", b.o.Metrics, err)
		return 0, false
	}
	return time.Duration(m["process_cpu_seconds_total"] * float64(time.Second)), true
}

// promSeries reads a Prometheus text endpoint (base URL of the metrics
// listener, or its /metrics URL).
func promSeries(ctx context.Context, base string) (map[string]float64, error) {
	u := strings.TrimRight(base, "/")
	if !strings.HasSuffix(u, "/metrics") {
		u += "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return parseProm(resp.Body)
}

// parseProm reads the samples of a Prometheus text exposition, keyed by
// the series as written (name and labels, e.g. `x_bucket{le="0.1"}`).
func parseProm(r io.Reader) (map[string]float64, error) {
	m := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

func hasSeries(m map[string]float64, series string) bool {
	_, ok := m[series]
	return ok
}

// bucketAt is a histogram's cumulative count at the bucket whose upper
// bound is le (within rounding).
func bucketAt(m map[string]float64, name string, le float64) (float64, bool) {
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+`_bucket{le="`)
		if !ok {
			continue
		}
		b, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err == nil && math.Abs(b-le) < le*1e-6 {
			return v, true
		}
	}
	return 0, false
}

// slowCommit is the bound above which a commit counts as slow in a
// window's storage figures: the bucket of matrixos_db_commit_seconds
// nearest 10 ms.
const slowCommit = 0.0128

// storageFigures records, from the server's metrics at the start (m0) and
// end (m1) of a measured phase, what may explain a tail: commits and those
// slower than slowCommit, WAL checkpoint passes and their time, and
// garbage collections. Figures whose series the server lacks are left out.
func storageFigures(r *result, m0, m1 map[string]float64) {
	delta := func(series string) (float64, bool) {
		if !hasSeries(m0, series) || !hasSeries(m1, series) {
			return 0, false
		}
		return m1[series] - m0[series], true
	}
	if n, ok := delta("matrixos_db_commit_seconds_count"); ok {
		r.add("commits", n, "")
		b0, ok0 := bucketAt(m0, "matrixos_db_commit_seconds", slowCommit)
		b1, ok1 := bucketAt(m1, "matrixos_db_commit_seconds", slowCommit)
		if ok0 && ok1 {
			r.add("commits_over_12ms", n-(b1-b0), "")
		}
	}
	if n, ok := delta("matrixos_db_wal_checkpoint_seconds_count"); ok {
		r.add("checkpoints", n, "")
		if s, ok := delta("matrixos_db_wal_checkpoint_seconds_sum"); ok {
			r.add("checkpoint_ms", math.Round(s*1e4)/10, "ms")
		}
	}
	if n, ok := delta("go_gc_duration_seconds_count"); ok {
		r.add("server_gc_cycles", n, "")
	}
}

// window is the measured phase of a scenario: the load average and the
// server's CPU time when it began.
type window struct {
	b     *bench
	load0 float64
	cpu0  time.Duration
	cpuOK bool
	prom0 map[string]float64 // the server's metrics (--metrics), or nil
}

// measure starts a scenario's measured phase.
func (b *bench) measure(ctx context.Context) *window {
	w := &window{b: b, load0: loadAverage()}
	w.cpu0, w.cpuOK = b.serverCPU(ctx)
	if b.o.Metrics != "" {
		w.prom0, _ = promSeries(ctx, b.o.Metrics)
	}
	return w
}

// finish ends the measured phase and records its conditions in r: the
// load average before and after, and the server's CPU time in total and
// per operation (ops operations of the kind op, e.g. "event").
func (w *window) finish(ctx context.Context, r *result, ops int, op string) {
	if cpu1, ok := w.b.serverCPU(ctx); ok && w.cpuOK {
		used := cpu1 - w.cpu0
		r.add("server_cpu_ms", ms(used), "ms")
		if ops > 0 {
			r.add("cpu_ms_per_op", math.Round(float64(used.Microseconds())/float64(ops))/1000, "ms/"+op)
		}
	}
	if w.prom0 != nil {
		if m1, err := promSeries(ctx, w.b.o.Metrics); err == nil {
			storageFigures(r, w.prom0, m1)
		}
	}
	r.add("load_before", w.load0, "")
	r.add("load_after", loadAverage(), "")
}
