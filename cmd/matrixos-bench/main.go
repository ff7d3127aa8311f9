// Command matrixos-bench is a load generator for Matrix homeservers. It
// speaks only the Client-Server API, so the same run can be pointed at
// Matrix OS or at any other homeserver for a side-by-side comparison.
//
// It registers its own users (open registration or the shared-secret admin
// API), then runs scenarios:
//
//	send         K concurrent senders in one room: throughput and latency
//	wakeup       one user's pending long-poll /sync is woken by another's send
//	fanout       one room, U members long-polling: time until each has a message
//	initialsync  initial /sync of a user in R rooms with H events each
//	longpoll     C concurrent long-polling /sync connections, all woken by one send
//	ledger       send twice side by side: rooms without and with Matrix OS's ledger
//
// With --pid (or --spawn) it also reports the server's RSS, idle and peak.
// With --spawn and --versus DENDRITE it starts both servers and runs the
// scenarios against each in turn, printing the ratios of their figures.
// Every loop is bounded in count and by --duration; it talks only to
// loopback addresses unless --allow-remote is given.
//
// Usage:
//
//	matrixos-bench --spawn ./bin/matrixos --scenario all
//	matrixos-bench --url http://127.0.0.1:8008 --pid $(pidof matrixos) --scenario send --json
//	matrixos-bench --spawn ./bin/matrixos --versus ~/.cache/matrixos/dendrite-v0.13.8/dendrite --runs 3
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	URL            string
	Scenarios      []string
	Senders        int
	SendRooms      int
	Runs           int
	Metrics        string
	Messages       int
	Users          []int
	Rooms          int
	Events         int
	Iterations     int
	FanoutMessages int
	SyncIterations int
	PID            int
	Duration       time.Duration
	SettleTimeout  time.Duration
	Register       string
	SharedSecret   string
	Password       string
	JSON           bool
	Spawn          string
	Versus         string
	SpawnArgs      []string
	AllowRemote    bool
	Pprof          string
	PprofSeconds   int
	PprofOut       string
	PprofScenario  string
	Concurrency    int
	Connections    int
	LongpollUsers  int
}

var allScenarios = []string{"send", "wakeup", "fanout", "initialsync"}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("matrixos-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8008", "homeserver base URL (ignored with --spawn)")
	scenario := fs.String("scenario", "all", "comma-separated: send, wakeup, fanout, initialsync, longpoll, sliding, ledger (send without and with the ledger, side by side); all is the first four")
	fs.IntVar(&o.Senders, "senders", 8, "send: concurrent senders (K)")
	fs.IntVar(&o.Messages, "messages", 500, "send: messages per sender (N)")
	fs.IntVar(&o.SendRooms, "send-rooms", 1, "send: rooms the senders are spread over (every sender is in every room and sends into them in turn)")
	fs.IntVar(&o.Runs, "runs", 1, "run the scenarios this many times and print the median of each figure")
	fs.StringVar(&o.Metrics, "metrics", "", "the server's Prometheus listener (e.g. http://127.0.0.1:9108): its process_cpu_seconds_total gives the server's CPU time when --pid and --spawn are not used, and each scenario reports its commits (those over 12 ms), WAL checkpoint passes and GC cycles")
	users := fs.String("users", "50", "fanout: long-polling members (U); a comma list runs each, e.g. 50,200")
	fs.IntVar(&o.Rooms, "rooms", 20, "initialsync and sliding: rooms (R)")
	fs.IntVar(&o.Events, "events", 50, "initialsync: messages per room (H)")
	fs.IntVar(&o.Iterations, "iterations", 200, "wakeup and sliding: sends measured (sliding: for each kind of sync)")
	fs.IntVar(&o.FanoutMessages, "fanout-messages", 20, "fanout: messages sent, one at a time")
	fs.IntVar(&o.SyncIterations, "sync-iterations", 20, "initialsync: initial syncs measured")
	fs.IntVar(&o.PID, "pid", 0, "server process ID: report its RSS (idle and peak) from /proc")
	fs.DurationVar(&o.Duration, "duration", 15*time.Minute, "cap on the whole run")
	fs.DurationVar(&o.SettleTimeout, "settle-timeout", 30*time.Second, "send: how long to wait for unread counts to catch up after the burst")
	fs.StringVar(&o.Register, "register", "open", "how users are created: open (m.login.dummy) or shared-secret")
	fs.StringVar(&o.SharedSecret, "shared-secret", "", "registration shared secret (--register shared-secret)")
	fs.StringVar(&o.Password, "password", "bench-Password-1", "password of the registered users")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON object per scenario on stdout (the table goes to stderr)")
	fs.StringVar(&o.Spawn, "spawn", "", "start this matrixos binary on a temporary data directory and measure it (start-up time, RSS)")
	fs.StringVar(&o.Versus, "versus", "", "a Dendrite binary: start it too and run the scenarios against both, interleaved, printing the ratios (needs --spawn)")
	fs.Func("spawn-arg", "extra argument for the spawned node (repeatable), e.g. --spawn-arg=--metrics-listen=127.0.0.1:9108", func(s string) error {
		o.SpawnArgs = append(o.SpawnArgs, s)
		return nil
	})
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a non-loopback --url")
	fs.StringVar(&o.Pprof, "pprof", "", "base URL of the server's pprof listener: take a CPU profile during --pprof-scenario")
	fs.StringVar(&o.PprofScenario, "pprof-scenario", "send", "scenario to profile: send, wakeup, fanout (the first run), fanout<U> (e.g. fanout200), initialsync, sliding or longpoll (from the send that wakes them)")
	fs.IntVar(&o.PprofSeconds, "pprof-seconds", 5, "CPU profile length")
	fs.StringVar(&o.PprofOut, "pprof-out", "send.pprof", "where the CPU profile is written")
	fs.IntVar(&o.Connections, "connections", 5000, "longpoll: concurrent long-polling /sync connections")
	fs.IntVar(&o.LongpollUsers, "longpoll-users", 10, "longpoll: users the connections are spread over")
	fs.IntVar(&o.Concurrency, "setup-concurrency", 2, "parallel requests while registering users and filling rooms")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*scenario, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "all":
			o.Scenarios = append(o.Scenarios, allScenarios...)
		case "send", "wakeup", "fanout", "initialsync", "longpoll", "sliding", "ledger":
			o.Scenarios = append(o.Scenarios, s)
		default:
			return nil, fmt.Errorf("unknown scenario %q", s)
		}
	}
	for _, s := range strings.Split(*users, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--users: %q is not a positive number", s)
		}
		o.Users = append(o.Users, n)
	}
	for name, v := range map[string]int{"senders": o.Senders, "messages": o.Messages, "rooms": o.Rooms, "events": o.Events,
		"iterations": o.Iterations, "fanout-messages": o.FanoutMessages, "sync-iterations": o.SyncIterations, "setup-concurrency": o.Concurrency,
		"connections": o.Connections, "longpoll-users": o.LongpollUsers, "send-rooms": o.SendRooms, "runs": o.Runs} {
		if v < 1 || v > 1_000_000 {
			return nil, fmt.Errorf("--%s must be between 1 and 1000000", name)
		}
	}
	switch o.Register {
	case "open":
	case "shared-secret":
		if o.SharedSecret == "" {
			return nil, errors.New("--register shared-secret needs --shared-secret")
		}
	default:
		return nil, fmt.Errorf("--register: want open or shared-secret, not %q", o.Register)
	}
	if o.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	if o.Versus != "" && o.Spawn == "" {
		return nil, errors.New("--versus needs --spawn: both servers are started by the tool")
	}
	return o, nil
}

// checkLoopback refuses a URL whose host is not a loopback address.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("invalid --url %q", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address; pass --allow-remote to load a remote server", host)
		}
	}
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "matrixos-bench:", err)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	if o.Versus != "" {
		return runVersus(ctx, o, args, stdout, stderr)
	}

	b := &bench{o: o, log: stderr, hc: newHTTPClient(), runID: randomID()}
	var results []*result
	emit := func(r *result) {
		results = append(results, r)
		if o.JSON {
			line, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(line))
		}
	}
	if o.Spawn != "" {
		secret := ""
		if o.Register == "shared-secret" {
			secret = o.SharedSecret
		}
		sp, err := spawnNode(ctx, o.Spawn, secret, o.SpawnArgs)
		if err != nil {
			return err
		}
		defer sp.stop()
		o.URL, o.PID = sp.URL, sp.PID
		r := &result{Scenario: "startup", Params: map[string]any{"binary": o.Spawn}}
		r.add("startup_ms", ms(sp.Startup), "ms")
		r.target("startup_ms", "< 100 ms", below(100))
		emit(r)
		b.logf("spawned %s (pid %d) at %s, first /versions after %v", o.Spawn, sp.PID, sp.URL, sp.Startup)
	} else if !o.AllowRemote {
		if err := checkLoopback(o.URL); err != nil {
			return err
		}
	}
	o.URL = strings.TrimRight(o.URL, "/")
	if err := versions(ctx, b.hc, o.URL); err != nil {
		return fmt.Errorf("server at %s: %w", o.URL, err)
	}

	var sampler *rssSampler
	var idleRSS int64
	if o.PID != 0 {
		time.Sleep(500 * time.Millisecond) // let start-up garbage settle
		if idleRSS, _, err = memStatus(o.PID); err != nil {
			return fmt.Errorf("--pid %d: %w", o.PID, err)
		}
		sampler = startSampler(o.PID, 20*time.Millisecond)
	}
	mach := readMachine()
	loadStart := loadAverage()
	b.logf("machine: %s; load average %.2f", mach, loadStart)
	if err := b.registerAll(ctx, b.usersNeeded(o.Runs)); err != nil {
		return err
	}
	if sampler != nil {
		// Password hashing during registration is not part of the
		// scenarios: note its peak, let the server settle, start over.
		b.setupPeak = sampler.Peak()
		time.Sleep(3 * time.Second)
		sampler.Reset()
		b.startRSS, _, _ = memStatus(o.PID)
	}

	for run := range o.Runs {
		if o.Runs > 1 {
			b.logf("run %d of %d", run+1, o.Runs)
		}
		for _, r := range b.runScenarios(ctx) {
			emit(r)
		}
	}
	if sampler != nil {
		sampler.Stop()
		_, hwm, _ := memStatus(o.PID)
		time.Sleep(2 * time.Second)
		after, _, _ := memStatus(o.PID)
		r := &result{Scenario: "rss", Params: map[string]any{"pid": o.PID}}
		r.add("idle_mib", mib(idleRSS), "MiB")
		r.target("idle_mib", "< 30 MB", below(30))
		r.add("peak_scenarios_mib", mib(sampler.Peak()), "MiB")
		r.target("peak_scenarios_mib", "< 120 MB", below(120))
		if b.setupPeak > 0 {
			r.add("peak_registration_mib", mib(b.setupPeak), "MiB")
			r.add("start_scenarios_mib", mib(b.startRSS), "MiB")
		}
		r.add("vmhwm_mib", mib(hwm), "MiB")
		r.add("after_idle_2s_mib", mib(after), "MiB")
		r.Note = "peak_scenarios is sampled every 20 ms after user registration (password hashing) and 3 s of rest; start_scenarios is the RSS when they began; vmhwm is the kernel's lifetime peak"
		emit(r)
	}
	if b.retries.Load() > 0 {
		b.logf("%d requests were rate-limited (429) and retried", b.retries.Load())
	}
	tableOut := stdout
	if o.JSON {
		tableOut = stderr
	}
	fmt.Fprintln(tableOut)
	writeTable(tableOut, results)
	fmt.Fprintln(tableOut)
	writeFigures(tableOut, figureConditions{Machine: mach, LoadStart: loadStart, LoadEnd: loadAverage(), Command: commandLine(args)}, results)
	return ctx.Err()
}

// runScenarios runs each chosen scenario once and returns its results.
func (b *bench) runScenarios(ctx context.Context) []*result {
	var out []*result
	for _, s := range b.o.Scenarios {
		if ctx.Err() != nil {
			break
		}
		var rs []*result
		var err error
		switch s {
		case "send":
			rs, err = b.send(ctx)
		case "ledger":
			rs, err = b.sendLedger(ctx)
		case "wakeup":
			rs, err = b.wakeup(ctx)
		case "fanout":
			for _, u := range b.o.Users {
				r, ferr := b.fanout(ctx, u)
				if r != nil {
					rs = append(rs, r)
				}
				if ferr != nil {
					err = ferr
					break
				}
			}
		case "initialsync":
			rs, err = b.initialSync(ctx)
		case "longpoll":
			rs, err = b.longpoll(ctx)
		case "sliding":
			rs, err = b.sliding(ctx)
		}
		out = append(out, rs...)
		if err != nil {
			b.logf("scenario %s failed: %v", s, err)
			out = append(out, &result{Scenario: s, Errors: 1, Note: err.Error()})
		}
	}
	return out
}

// commandLine is the tool's command line as typed, for the figures.
func commandLine(args []string) string {
	parts := []string{"matrixos-bench"}
	for _, a := range args {
		if strings.ContainsAny(a, " \t\"'{}$") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func randomID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}
