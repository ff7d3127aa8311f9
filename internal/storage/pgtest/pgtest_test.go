package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("PGTEST_HELPER"); mode != "" {
		helperProcess(mode)
	}
	RunMain(m)
}

func needPostgres(t *testing.T) {
	t.Helper()
	if !Available() {
		_, _, err := setup()
		if required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStartSelect1(t *testing.T) {
	dsn := Start(t)
	if !strings.HasPrefix(dsn, "postgres://postgres@/t_") || !strings.Contains(dsn, "?host=/") {
		t.Errorf("unexpected DSN form %q", dsn)
	}
	db := open(t, dsn)
	ctx := context.Background()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	var name, enc, user string
	var super bool
	if err := db.QueryRowContext(ctx,
		"SELECT current_database(), pg_encoding_to_char(encoding), current_user, usesuper"+
			" FROM pg_database, pg_user WHERE datname = current_database() AND usename = current_user",
	).Scan(&name, &enc, &user, &super); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dsn, "/"+name+"?") || enc != "UTF8" || user != "postgres" || !super {
		t.Errorf("database %q encoding %q user %q superuser %v; DSN %q", name, enc, user, super, dsn)
	}
	t.Logf("DSN %s", dsn)
}

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two calls returned the same DSN %q", a)
	}
	ctx := context.Background()
	dba, dbb := open(t, a), open(t, b)
	if _, err := dba.ExecContext(ctx, "CREATE TABLE x (v text); INSERT INTO x VALUES ('é')"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := dba.QueryRowContext(ctx, "SELECT v FROM x").Scan(&v); err != nil || v != "é" {
		t.Fatalf("read back %q, %v", v, err)
	}
	if _, err := dbb.ExecContext(ctx, "SELECT * FROM x"); err == nil {
		t.Fatal("table from one database visible in the other")
	}
}

func TestDropOnCleanup(t *testing.T) {
	t.Parallel()
	var dsn string
	t.Run("inner", func(t *testing.T) {
		dsn = Start(t)
		// Leave a connection open: the drop must terminate it.
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Ping(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	})
	if dsn == "" {
		t.Skip("inner test skipped")
	}
	name := dsn[len("postgres://postgres@/"):strings.IndexByte(dsn, '?')]
	var n int
	if err := cur.admin.QueryRow("SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test finished", name)
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range [][2]string{{"9.6", "10"}, {"10", "15"}, {"15", "16"}, {"9.5", "9.6"}, {"15", "15.1"}} {
		if !versionLess(c[0], c[1]) || versionLess(c[1], c[0]) {
			t.Errorf("versionLess(%s, %s) wrong", c[0], c[1])
		}
	}
}

// A test binary that dies without stopping its cluster must not leave it
// behind: the watchdog removes it at once, and failing that, the next Start
// does.
func TestNoLeftoverWhenKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two more clusters")
	}
	needPostgres(t)

	t.Run("watchdog", func(t *testing.T) {
		base, pid := killedHelper(t, "watchdog")
		deadline := time.Now().Add(60 * time.Second)
		for processAlive(pid) || exists(base) {
			if time.Now().After(deadline) {
				t.Fatalf("60s after the test process died: postmaster %d alive %v, %s exists %v",
					pid, processAlive(pid), base, exists(base))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("stale", func(t *testing.T) {
		base, pid := killedHelper(t, "nowatchdog")
		if !processAlive(pid) || !exists(base) {
			t.Fatalf("helper without watchdog: postmaster %d alive %v, %s exists %v",
				pid, processAlive(pid), base, exists(base))
		}
		cleanupStale(filepath.Dir(base))
		if processAlive(pid) || exists(base) {
			t.Fatalf("after cleanupStale: postmaster %d alive %v, %s exists %v",
				pid, processAlive(pid), base, exists(base))
		}
	})
}

// killedHelper runs this test binary in helper mode: it starts a cluster,
// reports its directory and postmaster PID, and SIGKILLs itself.
func killedHelper(t *testing.T, mode string) (base string, postmaster int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PGTEST_HELPER="+mode)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "BASE="); ok {
			base = v
		} else if v, ok := strings.CutPrefix(line, "PID="); ok {
			postmaster, _ = strconv.Atoi(v)
		}
	}
	if base == "" || postmaster == 0 {
		t.Fatalf("helper output:\n%s\nstderr:\n%s", &stdout, &stderr)
	}
	t.Cleanup(func() { // in case the test failed
		killPostmaster(filepath.Join(base, "data"))
		os.RemoveAll(base)
	})
	return base, postmaster
}

func helperProcess(mode string) {
	disableWatchdog = mode == "nowatchdog"
	c, err := getCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	fmt.Printf("BASE=%s\nPID=%s\n", c.base, strings.TrimSpace(first))
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
