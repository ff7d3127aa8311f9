package bridges

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/bridges/host"
	"github.com/matrixos/matrixos/internal/storage"
)

// Options configure the manager.
type Options struct {
	DataDir    string
	ServerName string
	// Kinds are the built-in bridges.
	Kinds []Kind
	// Accounts names the server's admins, who get the admin permission of
	// a bridge enabled from now on.
	Accounts *accounts.Service
	// ReloadAppservices loads the registration files again (the node's
	// appservice service); nil in the admin CLI, which records a change
	// for the running node instead.
	ReloadAppservices func(context.Context) error
	// BackoffMin and BackoffMax bound the wait before a failed bridge is
	// started again (1s and 5 min when zero).
	BackoffMin, BackoffMax time.Duration
	// ExternalEnv is added to the environment of external bridges'
	// programs ("KEY=value"), which otherwise get only PATH, LANG, LC_*,
	// TZ, SSL_CERT_*, TMPDIR and HOME (their directory): tests set what
	// their fake program needs.
	ExternalEnv []string
	// ReadyTimeout is how long an external bridge's program gets to
	// answer its readiness endpoint before it is stopped and started
	// again after the backoff (2 min when zero).
	ReadyTimeout time.Duration
	// PauseAppservice pauses (paused) or resumes the delivery of
	// transactions and the user and alias queries to an appservice (the
	// node's appservice queue's SetPaused). A bridge's appservice is
	// paused but while the bridge runs: nothing is sent to its loopback
	// port while another program may hold it.
	PauseAppservice func(appserviceID string, paused bool)
}

// Status is what the manager tells of one bridge.
type Status struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// External is true for a bridge run as a child process (Binary).
	External bool   `json:"external"`
	Binary   string `json:"binary,omitempty"`
	Enabled  bool   `json:"enabled"`
	// State is running, starting, backoff or stopped.
	State     string `json:"state"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error,omitempty"`
	// SinceTS is when the bridge entered State (ms), 0 if never started.
	SinceTS int64 `json:"since_ts"`
	// BridgeState is the last state the bridge reported (bridgev2's
	// CONNECTED, TRANSIENT_DISCONNECT, BAD_CREDENTIALS, ...), if any.
	BridgeState string `json:"bridge_state,omitempty"`
	// Dir is the bridge's directory (config.yaml, bridge.db, bridge.log).
	Dir string `json:"dir"`
	// RecentLogs are the last lines of its log (Get only).
	RecentLogs []string `json:"recent_logs,omitempty"`
}

// ErrUnknownBridge is returned for a name that is neither a built-in bridge
// nor an external one enabled before; ErrInvalid for a request that cannot
// be done as asked (a bad name or program).
var (
	ErrUnknownBridge = errors.New("no such bridge")
	ErrInvalid       = errors.New("invalid bridge request")
)

// Manager enables, disables and supervises the node's bridges.
type Manager struct {
	db      *storage.DB
	log     *slog.Logger
	opts    Options
	metrics *metrics

	mu            sync.Mutex
	kinds         map[string]Kind
	running       map[string]*supervisor
	homeserverURL string // set by Start; "" while not started
	stopped       bool
}

// New returns the manager; Start starts the enabled bridges.
func New(db *storage.DB, log *slog.Logger, opts Options) *Manager {
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	m := &Manager{db: db, log: log, opts: opts, metrics: newMetrics(),
		kinds: map[string]Kind{}, running: map[string]*supervisor{}}
	for _, k := range opts.Kinds {
		m.kinds[k.Name] = k
	}
	return m
}

// AddKind adds a built-in bridge (tests add their own); a running manager
// starts it at once if it is enabled.
func (m *Manager) AddKind(ctx context.Context, k Kind) error {
	m.mu.Lock()
	m.kinds[k.Name] = k
	m.mu.Unlock()
	return m.reconcile(ctx)
}

// Hold pauses the appservice of every bridge enabled or disabled before:
// the node calls it before it delivers to appservices, and each bridge's
// is resumed once the bridge runs.
func (m *Manager) Hold(ctx context.Context) error {
	rows, err := m.rows(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		m.pauseAppservice(r.name, true)
	}
	return nil
}

// pauseAppservice pauses or resumes the appservice of the bridge name.
func (m *Manager) pauseAppservice(name string, paused bool) {
	if m.opts.PauseAppservice != nil {
		m.opts.PauseAppservice(AppserviceID(name), paused)
	}
}

// Start starts every enabled bridge against the node's client API at
// homeserverURL.
func (m *Manager) Start(ctx context.Context, homeserverURL string) error {
	m.mu.Lock()
	m.homeserverURL = homeserverURL
	m.mu.Unlock()
	return m.reconcile(ctx)
}

// Stop stops every bridge (their data stays) and waits for them.
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stopped = true
	running := m.running
	m.running = map[string]*supervisor{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range running {
		wg.Go(func() {
			s.stop()
			s.logs.Close()
		})
	}
	wg.Wait()
}

// Collectors are the manager's metrics.
func (m *Manager) Collectors() []prometheus.Collector { return m.metrics.collectors() }

// live reports whether this manager runs bridges (the node's) rather than
// only recording changes (the admin CLI's).
func (m *Manager) live() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.homeserverURL != ""
}

// Enable writes the bridge's files unless they exist and records it
// enabled. It refuses a bridge whose appservice would take over accounts
// or namespaces that are not its own (see checkClaims). A running manager
// starts it; otherwise the running node is told (the admin CLI). binary, when not empty, makes it an external bridge run
// from that program.
func (m *Manager) Enable(ctx context.Context, name, binary string) (Status, error) {
	if err := CheckName(name); err != nil {
		return Status{}, err
	}
	if binary == "" {
		// An external bridge enabled again keeps its program.
		row, _, err := m.row(ctx, name)
		if err != nil {
			return Status{}, err
		}
		binary = row.binary
	}
	if err := m.checkClaims(ctx, name); err != nil {
		return Status{}, err
	}
	// Its appservice is loaded before it runs.
	m.pauseAppservice(name, true)
	if err := m.writeFiles(ctx, name, binary); err != nil {
		return Status{}, err
	}
	if err := m.record(ctx, name, true, binary); err != nil {
		return Status{}, err
	}
	return m.Status(ctx, name)
}

// Disable records the bridge disabled and stops it; its files and
// database stay, and enabling it again resumes it.
func (m *Manager) Disable(ctx context.Context, name string) (Status, error) {
	row, ok, err := m.row(ctx, name)
	if err != nil {
		return Status{}, err
	}
	if !ok {
		if _, builtin := m.kind(name); !builtin {
			return Status{}, fmt.Errorf("%w: %q", ErrUnknownBridge, name)
		}
	}
	if err := m.record(ctx, name, false, row.binary); err != nil {
		return Status{}, err
	}
	return m.Status(ctx, name)
}

// writeFiles writes a built-in or external bridge's registration and
// config.
func (m *Manager) writeFiles(ctx context.Context, name, binary string) error {
	admins, err := m.admins(ctx)
	if err != nil {
		return err
	}
	files := Files{DataDir: m.opts.DataDir, ServerName: m.opts.ServerName, Name: name, Admins: admins}
	if binary != "" {
		if _, builtin := m.kind(name); builtin {
			return fmt.Errorf("%w: bridge %s is built in: enable it without --binary", ErrInvalid, name)
		}
		return writeExternal(ctx, files, binary, m.opts.ExternalEnv)
	}
	kind, ok := m.kind(name)
	if !ok {
		return fmt.Errorf("%w: %q is not a built-in bridge (%v); an external bridge needs --binary", ErrUnknownBridge, name, m.kindNames())
	}
	files.Network, _, _ = kind.NewNetwork().GetConfig()
	return files.Write()
}

// admins lists the server's active admins.
func (m *Manager) admins(ctx context.Context) ([]id.UserID, error) {
	if m.opts.Accounts == nil {
		return nil, nil
	}
	users, err := m.opts.Accounts.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list admins: %w", err)
	}
	var out []id.UserID
	for _, u := range users {
		if u.IsAdmin && !u.Deactivated {
			out = append(out, u.ID)
		}
	}
	return out, nil
}

// record stores the bridge's state; a running manager then applies it,
// the admin CLI records a change for the running node.
func (m *Manager) record(ctx context.Context, name string, enabled bool, binary string) error {
	live := m.live()
	err := m.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO bridges (name, enabled, binary_path, updated_ts) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled, binary_path = excluded.binary_path, updated_ts = excluded.updated_ts`,
			name, boolInt(enabled), binary, time.Now().UnixMilli())
		if err != nil {
			return fmt.Errorf("record bridge %s: %w", name, err)
		}
		if !live {
			_, err = tx.RecordChange(ctx, ChangeBridges, name)
		}
		return err
	})
	if err != nil || !live {
		return err
	}
	return m.apply(ctx)
}

// ApplyChange applies a ChangeBridges recorded by the admin CLI.
func (m *Manager) ApplyChange(ctx context.Context, c storage.Change) error {
	if !m.live() {
		return nil // Start applies the table as it is then
	}
	return m.apply(ctx)
}

// apply loads the registrations again, then starts and stops bridges to
// match the table.
func (m *Manager) apply(ctx context.Context) error {
	if m.opts.ReloadAppservices != nil {
		if err := m.opts.ReloadAppservices(ctx); err != nil {
			m.log.Warn("bridges: some appservice registrations were refused", "err", err)
		}
	}
	return m.reconcile(ctx)
}

// reconcile starts the enabled bridges that are not running and stops the
// running ones that are no longer enabled.
func (m *Manager) reconcile(ctx context.Context) error {
	rows, err := m.rows(ctx)
	if err != nil {
		return err
	}
	stopping, err := m.startEnabled(rows)
	// A disabled bridge has stopped when Disable returns.
	for _, s := range stopping {
		s.stop()
		s.logs.Close()
	}
	return err
}

// startEnabled starts the enabled bridges that are not running, and takes
// the running ones that are no longer enabled out of the running set for
// the caller to stop.
func (m *Manager) startEnabled(rows []bridgeRow) (stopping []*supervisor, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.homeserverURL == "" || m.stopped {
		return nil, nil
	}
	want := map[string]bridgeRow{}
	for _, r := range rows {
		if r.enabled {
			want[r.name] = r
		}
	}
	for name, s := range m.running {
		if _, ok := want[name]; !ok {
			delete(m.running, name)
			stopping = append(stopping, s)
		}
	}
	var errs []error
	for name, r := range want {
		if _, ok := m.running[name]; ok {
			continue
		}
		run, err := m.runner(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s := &supervisor{
			name: name, dir: Dir(m.opts.DataDir, name), run: run, metrics: m.metrics,
			logs:       newLogSink(filepath.Join(Dir(m.opts.DataDir, name), "bridge.log")),
			backoffMin: m.opts.BackoffMin, backoffMax: m.opts.BackoffMax,
			onState: func(state string) { m.pauseAppservice(name, state != StateRunning) },
		}
		m.running[name] = s
		s.start()
		m.log.Info("bridge started", "bridge", name, "external", r.binary != "")
	}
	return stopping, errors.Join(errs...)
}

// runner is how to run the bridge of the row; the mutex is held.
func (m *Manager) runner(r bridgeRow) (runFunc, error) {
	if r.binary != "" {
		return m.externalRunner(r.name, r.binary), nil
	}
	kind, ok := m.kinds[r.name]
	if !ok {
		return nil, fmt.Errorf("bridge %s is enabled but this node has no such built-in bridge", r.name)
	}
	hsURL := m.homeserverURL
	return func(ctx context.Context, log io.Writer, started func(), onState func(status.BridgeState)) error {
		return host.Run(ctx, host.Options{
			Name: kind.Name, Dir: Dir(m.opts.DataDir, kind.Name),
			RegistrationFile: RegistrationFile(m.opts.DataDir, kind.Name),
			HomeserverURL:    hsURL, ServerName: m.opts.ServerName,
			Network: kind.NewNetwork(), Log: log, Started: started, OnState: onState,
		})
	}, nil
}

// List returns the status of every bridge: the built-in ones and the
// external ones ever enabled, by name.
func (m *Manager) List(ctx context.Context) ([]Status, error) {
	rows, err := m.rows(ctx)
	if err != nil {
		return nil, err
	}
	names := m.kindNames()
	for _, r := range rows {
		if !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	slices.Sort(names)
	out := make([]Status, 0, len(names))
	for _, name := range names {
		st, err := m.status(ctx, name, false)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Status returns the bridge's status with its recent log lines.
func (m *Manager) Status(ctx context.Context, name string) (Status, error) {
	return m.status(ctx, name, true)
}

func (m *Manager) status(ctx context.Context, name string, withLogs bool) (Status, error) {
	row, found, err := m.row(ctx, name)
	if err != nil {
		return Status{}, err
	}
	kind, builtin := m.kind(name)
	if !found && !builtin {
		return Status{}, fmt.Errorf("%w: %q", ErrUnknownBridge, name)
	}
	st := Status{
		Name: name, Description: kind.Description, External: row.binary != "", Binary: row.binary,
		Enabled: row.enabled, State: StateStopped, Dir: Dir(m.opts.DataDir, name),
	}
	if st.External {
		st.Description = "external bridge " + filepath.Base(row.binary)
	}
	m.mu.Lock()
	s := m.running[name]
	live := m.homeserverURL != ""
	m.mu.Unlock()
	var h health
	var known bool
	if s != nil {
		h, known = s.snapshot(), true
	} else if !live {
		// The admin CLI tells what the running node last wrote.
		h, known = readHealth(st.Dir)
	}
	if known {
		st.State, st.Restarts, st.LastError, st.BridgeState = h.State, h.Restarts, h.LastError, h.BridgeState
		st.SinceTS = h.Since.UnixMilli()
	}
	if withLogs {
		if s != nil {
			st.RecentLogs = s.logs.Lines()
		} else {
			st.RecentLogs = tailFile(filepath.Join(st.Dir, "bridge.log"), ringLines)
		}
	}
	return st, nil
}

func (m *Manager) kind(name string) (Kind, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.kinds[name]
	return k, ok
}

func (m *Manager) kindNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.kinds))
	for name := range m.kinds {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// bridgeRow is a row of the bridges table.
type bridgeRow struct {
	name    string
	enabled bool
	binary  string
}

func (m *Manager) rows(ctx context.Context) ([]bridgeRow, error) {
	rs, err := m.db.Query(ctx, "SELECT name, enabled, binary_path FROM bridges ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read bridges: %w", err)
	}
	defer rs.Close()
	var out []bridgeRow
	for rs.Next() {
		var r bridgeRow
		var enabled int
		if err := rs.Scan(&r.name, &enabled, &r.binary); err != nil {
			return nil, fmt.Errorf("read bridges: %w", err)
		}
		r.enabled = enabled == 1
		out = append(out, r)
	}
	return out, rs.Err()
}

func (m *Manager) row(ctx context.Context, name string) (bridgeRow, bool, error) {
	rows, err := m.rows(ctx)
	if err != nil {
		return bridgeRow{}, false, err
	}
	for _, r := range rows {
		if r.name == name {
			return r, true, nil
		}
	}
	return bridgeRow{name: name}, false, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tailFile returns the last n lines of a file (none if it cannot be read).
func tailFile(path string, n int) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := splitLines(string(data))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
