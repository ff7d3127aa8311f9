package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// summary is the distribution of a set of durations.
type summary struct {
	N                  int
	Min, Mean, Max     time.Duration
	P50, P90, P95, P99 time.Duration
}

func (l *latencies) summary() summary {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	return summarize(d)
}

// summarize computes the distribution; percentiles use the nearest-rank
// method (the smallest value with at least p% of samples at or below it).
func summarize(d []time.Duration) summary {
	if len(d) == 0 {
		return summary{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return summary{
		N: len(d), Min: d[0], Max: d[len(d)-1], Mean: sum / time.Duration(len(d)),
		P50: percentile(d, 50), P90: percentile(d, 90), P95: percentile(d, 95), P99: percentile(d, 99),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(0, min(rank, len(sorted))-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// metric is one measured figure.
type metric struct {
	Name  string
	Value float64
	Unit  string
	// Target is the goal for this figure ("" when none), checked by
	// ok.
	Target string
	ok     func(float64) bool
}

// result is one scenario's outcome.
type result struct {
	Scenario string
	Params   map[string]any
	Metrics  []metric
	Errors   int
	Note     string
}

func (r *result) add(name string, v float64, unit string) *metric {
	r.Metrics = append(r.Metrics, metric{Name: name, Value: v, Unit: unit})
	return &r.Metrics[len(r.Metrics)-1]
}

// addLatency records a distribution as <prefix>_p50_ms, ... .
func (r *result) addLatency(prefix string, s summary) {
	r.add(prefix+"p50_ms", ms(s.P50), "ms")
	r.add(prefix+"p95_ms", ms(s.P95), "ms")
	r.add(prefix+"p99_ms", ms(s.P99), "ms")
	r.add(prefix+"max_ms", ms(s.Max), "ms")
}

// target attaches a goal to the named metric.
func (r *result) target(name, text string, ok func(float64) bool) {
	for i := range r.Metrics {
		if r.Metrics[i].Name == name {
			r.Metrics[i].Target, r.Metrics[i].ok = text, ok
		}
	}
}

func below(limit float64) func(float64) bool   { return func(v float64) bool { return v < limit } }
func atLeast(limit float64) func(float64) bool { return func(v float64) bool { return v >= limit } }

// MarshalJSON writes the result as one flat JSON object.
func (r *result) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for _, x := range r.Metrics {
		m[x.Name] = x.Value
	}
	out := map[string]any{"scenario": r.Scenario, "params": r.Params, "metrics": m, "errors": r.Errors}
	if r.Note != "" {
		out["note"] = r.Note
	}
	targets := map[string]any{}
	for _, x := range r.Metrics {
		if x.Target != "" {
			targets[x.Name] = map[string]any{"target": x.Target, "met": x.ok(x.Value)}
		}
	}
	if len(targets) > 0 {
		out["targets"] = targets
	}
	return json.Marshal(out)
}

// paramString renders params as "k=v k=v" in key order.
func paramString(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(parts, " ")
}

// writeTable prints every result as a readable table.
func writeTable(w io.Writer, results []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPARAMS\tMETRIC\tVALUE\tTARGET\t")
	for _, r := range results {
		params := paramString(r.Params)
		if r.Errors > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t\t\n", r.Scenario, params, "errors", r.Errors)
			params = ""
		}
		for _, x := range r.Metrics {
			tgt := ""
			if x.Target != "" {
				mark := "MET"
				if !x.ok(x.Value) {
					mark = "MISSED"
				}
				tgt = x.Target + " " + mark
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", r.Scenario, params, x.Name, formatValue(x), tgt)
			params = ""
		}
	}
	tw.Flush()
	for _, r := range results {
		if r.Note != "" {
			fmt.Fprintf(w, "%s (%s): %s\n", r.Scenario, paramString(r.Params), r.Note)
		}
	}
}

func formatValue(x metric) string {
	v := x.Value
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f %s", v, x.Unit)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f %s", v, x.Unit)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f %s", v, x.Unit)
	default:
		return fmt.Sprintf("%.2f %s", v, x.Unit)
	}
}

// figureConditions are the run's conditions printed with the figures.
type figureConditions struct {
	Machine            machine
	LoadStart, LoadEnd float64
	Command            string
}

// figure is one metric of one scenario (with its parameters) over the
// runs.
type figure struct {
	scenario, params string
	metric           string
	unit             string
	values           []float64
	cpuPerOp         []float64 // the runs' cpu_ms_per_op
	opUnit           string
	loadBefore       []float64
	loadAfter        []float64
	errors           int
}

// median returns the middle value (the lower middle of an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// collectFigures groups the results by scenario and parameters and each
// metric's values over the runs, in the order they first appeared. The
// conditions (load average, CPU per operation) are not figures of their
// own: they go beside each figure.
func collectFigures(results []*result) []*figure {
	var out []*figure
	byKey := map[string]*figure{}
	for _, r := range results {
		params := paramString(r.Params)
		var cpu, before, after float64
		var hasCPU, hasLoad bool
		opUnit := ""
		for _, x := range r.Metrics {
			switch x.Name {
			case "cpu_ms_per_op":
				cpu, hasCPU, opUnit = x.Value, true, x.Unit
			case "load_before":
				before, hasLoad = x.Value, true
			case "load_after":
				after = x.Value
			}
		}
		for _, x := range r.Metrics {
			switch x.Name {
			case "cpu_ms_per_op", "load_before", "load_after":
				continue
			}
			key := r.Scenario + "\x00" + params + "\x00" + x.Name
			f := byKey[key]
			if f == nil {
				f = &figure{scenario: r.Scenario, params: params, metric: x.Name, unit: x.Unit, opUnit: opUnit}
				byKey[key] = f
				out = append(out, f)
			}
			f.values = append(f.values, x.Value)
			f.errors += r.Errors
			if hasCPU {
				f.cpuPerOp = append(f.cpuPerOp, cpu)
			}
			if hasLoad {
				f.loadBefore = append(f.loadBefore, before)
				f.loadAfter = append(f.loadAfter, after)
			}
		}
	}
	return out
}

// writeFigures prints every figure as a Markdown table row that can be
// pasted into docs/performance.md: the median over the runs, each run's
// value, the server's CPU time per operation (median), and the load
// average before the first and after the last run of that scenario; then
// the machine and the command.
func writeFigures(w io.Writer, c figureConditions, results []*result) {
	figs := collectFigures(results)
	if len(figs) == 0 {
		return
	}
	runs := 0
	for _, f := range figs {
		runs = max(runs, len(f.values))
	}
	fmt.Fprintf(w, "Figures (median of %d run(s)) on %s, load average %.2f before, %.2f after:\n", runs, c.Machine, c.LoadStart, c.LoadEnd)
	fmt.Fprintf(w, "    %s\n\n", c.Command)
	fmt.Fprintln(w, "| Scenario | Figure | Median | Runs | Server CPU per op | Load before → after |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, f := range figs {
		each := make([]string, len(f.values))
		for i, v := range f.values {
			each[i] = strings.TrimSpace(formatValue(metric{Value: v}))
		}
		cpu := "—"
		if len(f.cpuPerOp) > 0 {
			cpu = fmt.Sprintf("%.3f %s", median(f.cpuPerOp), f.opUnit)
		}
		load := "—"
		if len(f.loadBefore) > 0 {
			load = fmt.Sprintf("%.2f → %.2f", f.loadBefore[0], f.loadAfter[len(f.loadAfter)-1])
		}
		name := f.scenario
		if f.params != "" {
			name += " " + f.params
		}
		if f.errors > 0 {
			name += fmt.Sprintf(" (%d errors)", f.errors)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, f.metric,
			strings.TrimSpace(formatValue(metric{Value: median(f.values), Unit: f.unit})), strings.Join(each, " / "), cpu, load)
	}
}
