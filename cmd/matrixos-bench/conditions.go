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
	v, err := promCPUSeconds(ctx, b.o.Metrics)
	if err != nil {
		b.logf("server CPU from %s: %v", b.o.Metrics, err)
		return 0, false
	}
	return time.Duration(v * float64(time.Second)), true
}

// promCPUSeconds reads process_cpu_seconds_total from a Prometheus text
// endpoint (base URL of the metrics listener, or its /metrics URL).
func promCPUSeconds(ctx context.Context, base string) (float64, error) {
	u := strings.TrimRight(base, "/")
	if !strings.HasSuffix(u, "/metrics") {
		u += "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return parsePromCPU(resp.Body)
}

func parsePromCPU(r io.Reader) (float64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no process_cpu_seconds_total")
}

// window is the measured phase of a scenario: the load average and the
// server's CPU time when it began.
type window struct {
	b     *bench
	load0 float64
	cpu0  time.Duration
	cpuOK bool
}

// measure starts a scenario's measured phase.
func (b *bench) measure(ctx context.Context) *window {
	w := &window{b: b, load0: loadAverage()}
	w.cpu0, w.cpuOK = b.serverCPU(ctx)
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
	r.add("load_before", w.load0, "")
	r.add("load_after", loadAverage(), "")
}
