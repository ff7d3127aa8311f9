package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// ErrNotInstalled is returned (wrapped) when no usable PostgreSQL server
// binaries, or no unprivileged user to run them as, can be found.
var ErrNotInstalled = errors.New("postgresql not installed")

// dirPrefix starts the name of every cluster directory:
// <TempDir>/matrixos-pgtest-<owner pid>-<random>.
const dirPrefix = "matrixos-pgtest-"

// Timeouts. The CI machines are small; be generous.
const (
	startTimeout = 120 * time.Second // pg_ctl -w start
	adminTimeout = 60 * time.Second  // CREATE/DROP DATABASE
)

var (
	startOnce sync.Once
	cur       *cluster
	startErr  error

	stateMu sync.Mutex
	stopped bool

	// disableWatchdog is set by this package's tests to leave a cluster
	// behind on purpose.
	disableWatchdog bool
)

// Available reports whether PostgreSQL server binaries (and, when running as
// root, a user to run them as) were found, i.e. whether [Start] can be
// expected to start a cluster rather than skip.
func Available() bool {
	_, _, err := setup()
	return err == nil
}

// Start returns the DSN of a new, empty database in this test process's
// PostgreSQL cluster, starting the cluster on first use. The DSN has the form
// postgres://postgres@/t_<random>?host=<socket dir>&sslmode=disable and works
// with pgx and database/sql's "pgx" driver (github.com/jackc/pgx/v5/stdlib).
// The user "postgres" is a superuser; no password is needed.
//
// The database is dropped when tb finishes (open connections to it are
// terminated). If PostgreSQL is not installed, Start skips tb, or fails it
// when $CI is non-empty or MATRIXOS_REQUIRE_POSTGRES=1.
func Start(tb testing.TB) (dsn string) {
	tb.Helper()
	c, err := getCluster()
	if err != nil {
		if errors.Is(err, ErrNotInstalled) && !required() {
			tb.Skipf("pgtest: %v", err)
		}
		tb.Fatalf("pgtest: %v", err)
	}
	name := "t_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := c.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := c.dropDatabase(name); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	return c.dsn(name)
}

// RunMain runs the tests and then stops the cluster, if one was started, and
// exits with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.RunMain(m) }
func RunMain(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop shuts the cluster down (immediate mode) and removes its directory. It
// is safe to call more than once, and when no cluster was started; [Start]
// fails after it. Without a call to Stop the cluster is still removed, by
// the watchdog, right after the test process exits.
func Stop() {
	stateMu.Lock()
	stopped = true
	stateMu.Unlock()
	// Wait for a start in progress, or prevent a later one.
	startOnce.Do(func() { startErr = errors.New("cluster already stopped") })
	if cur != nil {
		cur.stop()
	}
}

func getCluster() (*cluster, error) {
	startOnce.Do(func() { cur, startErr = startCluster() })
	stateMu.Lock()
	defer stateMu.Unlock()
	if stopped {
		return nil, errors.New("cluster already stopped (Start called after Stop or RunMain's m.Run)")
	}
	return cur, startErr
}

// required reports whether a missing PostgreSQL must fail tests rather than
// skip them.
func required() bool {
	return os.Getenv("CI") != "" || os.Getenv("MATRIXOS_REQUIRE_POSTGRES") == "1"
}

// ---------------------------------------------------------------------------
// Discovery

var (
	setupOnce sync.Once
	setupBin  string
	setupCred *syscall.Credential
	setupErr  error
)

// setup finds the server binaries and the credentials to run them with (nil:
// run as the current user).
func setup() (bin string, cred *syscall.Credential, err error) {
	setupOnce.Do(func() {
		setupBin, setupErr = findBinDir()
		if setupErr == nil {
			setupCred, setupErr = serverCredential()
		}
	})
	return setupBin, setupCred, setupErr
}

func findBinDir() (string, error) {
	if d := os.Getenv("MATRIXOS_PG_BINDIR"); d != "" {
		if hasServerBinaries(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w: MATRIXOS_PG_BINDIR=%s has no initdb, pg_ctl and postgres", ErrNotInstalled, d)
	}
	// pg_config may come from the client library package (libpq-dev) alone;
	// only trust it if the server binaries are really there.
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); hasServerBinaries(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		return versionLess(filepath.Base(filepath.Dir(dirs[j])), filepath.Base(filepath.Dir(dirs[i])))
	})
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb/pg_ctl/postgres found (pg_config --bindir, /usr/lib/postgresql/*/bin, $PATH); set MATRIXOS_PG_BINDIR or install the postgresql package", ErrNotInstalled)
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// versionLess compares dotted numeric versions ("9.6" < "15").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx != nil || erry != nil {
			if as[i] != bs[i] {
				return as[i] < bs[i]
			}
			continue
		}
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

// serverCredential returns nil when not running as root. initdb and postgres
// refuse to run as root, so as root the cluster is run as the "postgres"
// user (or $MATRIXOS_PGTEST_USER).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("MATRIXOS_PGTEST_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: running as root and no user %q to run the server as: %v", ErrNotInstalled, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q: bad uid/gid %q/%q", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("%w: user %q is root; PostgreSQL refuses to run as root", ErrNotInstalled, name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tempParent picks the directory to create clusters in: os.TempDir(), unless
// its path is too long for a unix socket or, when the server runs as another
// user, not searchable by that user.
func tempParent(otherUser bool) string {
	d := os.TempDir()
	// Socket path: <d>/matrixos-pgtest-<pid>-<rand>/.s.PGSQL.5432 < 108 bytes.
	if len(d) > 50 || (otherUser && !worldSearchable(d)) {
		return "/tmp"
	}
	return d
}

func worldSearchable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------
// The cluster

type cluster struct {
	bin     string              // directory of initdb, pg_ctl, postgres
	cred    *syscall.Credential // nil: run as ourselves
	base    string              // <TempDir>/matrixos-pgtest-<pid>-<rand>; also the socket dir
	data    string              // base/data
	logFile string              // base/postgres.log

	admin   *sql.DB // to database "postgres"
	version int     // server_version_num

	watchdog     *exec.Cmd
	watchdogPipe *os.File // write end; the watchdog acts when it closes

	stopOnce sync.Once
}

func startCluster() (_ *cluster, err error) {
	bin, cred, err := setup()
	if err != nil {
		return nil, err
	}
	parent := tempParent(cred != nil)
	cleanupStale(parent)

	base, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	c := &cluster{
		bin:     bin,
		cred:    cred,
		base:    base,
		data:    filepath.Join(base, "data"),
		logFile: filepath.Join(base, "postgres.log"),
	}
	defer func() {
		if err != nil {
			if log := c.logTail(); log != "" {
				err = fmt.Errorf("%w\nserver log (%s):\n%s", err, c.logFile, log)
			}
			c.stop()
		}
	}()
	if cred != nil {
		if err := os.Chown(base, int(cred.Uid), int(cred.Gid)); err != nil {
			return c, fmt.Errorf("chown %s to the server user: %w", base, err)
		}
	}
	if !disableWatchdog {
		if err := c.startWatchdog(); err != nil {
			return c, err
		}
	}
	if err := c.run("initdb", "-D", c.data, "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return c, err
	}
	opts := "-k " + shellQuote(c.base) + " -c listen_addresses='' -c fsync=off" +
		" -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
	if err := c.run("pg_ctl", "-D", c.data, "-l", c.logFile, "-o", opts,
		"-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "start"); err != nil {
		return c, err
	}
	c.admin, err = sql.Open("pgx", c.dsn("postgres"))
	if err != nil {
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	var v string
	if err := c.admin.QueryRowContext(ctx, "SHOW server_version_num").Scan(&v); err != nil {
		return c, fmt.Errorf("connect to the test cluster: %w", err)
	}
	c.version, _ = strconv.Atoi(v)
	return c, nil
}

func (c *cluster) dsn(db string) string {
	host := strings.ReplaceAll(url.QueryEscape(c.base), "%2F", "/")
	return "postgres://postgres@/" + db + "?host=" + host + "&sslmode=disable"
}

func (c *cluster) dropDatabase(name string) error {
	stateMu.Lock()
	gone := stopped
	stateMu.Unlock()
	if gone {
		return nil
	}
	q := "DROP DATABASE IF EXISTS " + name
	if c.version >= 130000 {
		q += " WITH (FORCE)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := c.admin.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		if c.admin != nil {
			c.admin.Close()
		}
		if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err == nil {
			_ = c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop")
		}
		_ = os.RemoveAll(c.base)
		if c.watchdogPipe != nil {
			c.watchdogPipe.Close() // the watchdog finds nothing left to do
			done := make(chan struct{})
			go func() { c.watchdog.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
			}
		}
	})
}

// run runs one of the server binaries as the server user.
func (c *cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.base
	cmd.Env = c.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pg_ctl's postmaster gets the log file, not our pipe; but never hang on
	// a pipe inherited by a daemon.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// env is the environment for the server's processes: ours without libpq's
// PG* variables, in the C locale, and with the server user's identity.
func (c *cluster) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" ||
			(c.cred != nil && (k == "HOME" || k == "USER" || k == "LOGNAME")) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C", "LANG=C")
	if c.cred != nil {
		if u, err := user.LookupId(strconv.Itoa(int(c.cred.Uid))); err == nil {
			env = append(env, "USER="+u.Username, "LOGNAME="+u.Username)
		}
		env = append(env, "HOME="+c.base)
	}
	return env
}

// startWatchdog starts a shell, in its own process group and as the server
// user, that blocks reading a pipe only this process holds open. When this
// process exits, however it exits, the read returns and the shell stops the
// cluster and removes its directory.
func (c *cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	const script = `read -r _ || :
"$PGTEST_PG_CTL" -D "$PGTEST_DATA" -m immediate -w stop >/dev/null 2>&1 || :
rm -rf -- "$PGTEST_BASE"`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin = r // stdout, stderr: /dev/null
	cmd.Dir = "/"
	cmd.Env = append(c.env(),
		"PGTEST_PG_CTL="+filepath.Join(c.bin, "pg_ctl"),
		"PGTEST_DATA="+c.data,
		"PGTEST_BASE="+c.base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	c.watchdog, c.watchdogPipe = cmd, w
	return nil
}

func (c *cluster) logTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// ---------------------------------------------------------------------------
// Leftovers

// cleanupStale removes cluster directories under parent whose owning test
// process is gone (normally the watchdog has done it already), first killing
// the postmaster if it still runs.
func cleanupStale(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, dirPrefix) {
			continue
		}
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(name, dirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		dir := filepath.Join(parent, name)
		killPostmaster(filepath.Join(dir, "data"))
		_ = os.RemoveAll(dir)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: assume alive
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// killPostmaster stops the postmaster of a leftover data directory, if it
// still runs. The PID from postmaster.pid is only signalled if that process's
// working directory is the data directory (the postmaster chdirs there), so
// a recycled PID is never hit.
func killPostmaster(data string) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return
	}
	if want, err := filepath.EvalSymlinks(data); err != nil || cwd != want {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
