package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// contender is one server of a side-by-side run.
type contender struct {
	name string
	sp   *spawned
	b    *bench
}

// runVersus runs the scenarios against the --spawn node and a Dendrite
// started from --versus, both on fresh data and registering their own
// users, interleaved: each run measures both, the first server of a run
// alternating, so that a change of the machine's load falls on both. It
// prints each server's figures, then every figure's medians side by side
// with their ratio, the server's CPU per operation included.
func runVersus(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	mos, err := spawnNode(ctx, o.Spawn, "", o.SpawnArgs)
	if err != nil {
		return err
	}
	defer mos.stop()
	den, err := spawnDendrite(ctx, o.Versus)
	if err != nil {
		return err
	}
	defer den.stop()
	var results []*result
	emit := func(r *result) {
		results = append(results, r)
		if o.JSON {
			line, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(line))
		}
	}
	contenders := []*contender{{name: "matrixos", sp: mos}, {name: "dendrite", sp: den}}
	mach := readMachine()
	loadStart := loadAverage()
	for _, c := range contenders {
		co := *o
		co.URL, co.PID, co.Register, co.Pprof = c.sp.URL, c.sp.PID, "open", ""
		c.b = &bench{o: &co, log: stderr, hc: newHTTPClient(), runID: randomID()}
		r := &result{Scenario: "startup", Params: map[string]any{"server": c.name}}
		r.add("startup_ms", ms(c.sp.Startup), "ms")
		emit(r)
		c.b.logf("%s: pid %d at %s, first /versions after %v", c.name, c.sp.PID, c.sp.URL, c.sp.Startup)
	}
	c0 := contenders[0]
	c0.b.logf("machine: %s; load average %.2f", mach, loadStart)
	for _, c := range contenders {
		if err := c.b.registerAll(ctx, c.b.usersNeeded(o.Runs)); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	for run := range o.Runs {
		order := slices.Clone(contenders)
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			c.b.logf("run %d of %d: %s", run+1, o.Runs, c.name)
			for _, r := range c.b.runScenarios(ctx) {
				if r.Params == nil {
					r.Params = map[string]any{}
				}
				r.Params["server"] = c.name
				emit(r)
			}
		}
	}
	tableOut := stdout
	if o.JSON {
		tableOut = stderr
	}
	fmt.Fprintln(tableOut)
	writeTable(tableOut, results)
	fmt.Fprintln(tableOut)
	cond := figureConditions{Machine: mach, LoadStart: loadStart, LoadEnd: loadAverage(), Command: commandLine(args)}
	writeFigures(tableOut, cond, results)
	fmt.Fprintln(tableOut)
	writeRatios(tableOut, cond, results, "matrixos", "dendrite")
	return ctx.Err()
}

// ratioRow is one figure's values on the two servers of a side-by-side
// run, over the runs.
type ratioRow struct {
	scenario, params, metric, unit string
	values                         map[string][]float64
}

// collectRatios groups the results' metrics by scenario, parameters
// (the server left out) and metric, in order of appearance; the load
// average is not a figure of its own.
func collectRatios(results []*result) []*ratioRow {
	var out []*ratioRow
	byKey := map[string]*ratioRow{}
	for _, r := range results {
		server, _ := r.Params["server"].(string)
		params := maps.Clone(r.Params)
		delete(params, "server")
		ps := paramString(params)
		for _, x := range r.Metrics {
			if x.Name == "load_before" || x.Name == "load_after" {
				continue
			}
			key := r.Scenario + "\x00" + ps + "\x00" + x.Name
			row := byKey[key]
			if row == nil {
				row = &ratioRow{scenario: r.Scenario, params: ps, metric: x.Name, unit: x.Unit, values: map[string][]float64{}}
				byKey[key] = row
				out = append(out, row)
			}
			row.values[server] = append(row.values[server], x.Value)
		}
	}
	return out
}

// writeRatios prints, for every figure measured on both servers, the
// median on each and other ÷ base, as Markdown rows for
// docs/performance.md. Above 1 the other server took more (time, CPU,
// memory) or achieved more (throughput, counts).
func writeRatios(w io.Writer, c figureConditions, results []*result, base, other string) {
	rows := collectRatios(results)
	fmt.Fprintf(w, "Side by side (medians; %s ÷ %s), %s, load average %.2f before, %.2f after:\n", other, base, c.Machine, c.LoadStart, c.LoadEnd)
	fmt.Fprintf(w, "    %s\n\n", c.Command)
	fmt.Fprintf(w, "| Scenario | Figure | %s | %s | %s ÷ %s |\n", base, other, other, base)
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, row := range rows {
		a, b := row.values[base], row.values[other]
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		ma, mb := median(a), median(b)
		ratio := "—"
		if ma != 0 {
			ratio = fmt.Sprintf("%.2f", mb/ma)
		}
		name := row.scenario
		if row.params != "" {
			name += " " + row.params
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", name, row.metric,
			strings.TrimSpace(formatValue(metric{Value: ma, Unit: row.unit})),
			strings.TrimSpace(formatValue(metric{Value: mb, Unit: row.unit})), ratio)
	}
}
