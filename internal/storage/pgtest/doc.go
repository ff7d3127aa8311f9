// Package pgtest runs a throwaway PostgreSQL cluster for tests, built from
// the PostgreSQL server binaries installed on the machine.
//
// Each test process lazily starts at most one cluster (initdb into a
// temporary directory, unix socket only, fsync off), and every call to
// [Start] creates a fresh, empty database in it and returns its DSN:
//
//	func TestMain(m *testing.M) { pgtest.RunMain(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Start(t) // postgres://postgres@/t_…?host=/tmp/…
//		db, err := storage.Open(ctx, dsn, nil)
//		…
//	}
//
// The database is dropped when the test ends; [RunMain] (or [Stop]) shuts
// the cluster down and removes its directory when the tests are done.
//
// A cluster is never left behind by a test binary that dies: a small
// watchdog process stops the cluster and removes its directory as soon as
// the test process exits for any reason (including SIGKILL or a
// "go test -timeout" panic), and [Start] also removes the directories of
// clusters whose owning test process is gone.
//
// When no PostgreSQL server binaries are found, [Start] skips the test —
// unless the environment variable CI is non-empty or
// MATRIXOS_REQUIRE_POSTGRES=1, in which case it fails it. The binaries are
// looked up in $MATRIXOS_PG_BINDIR, then `pg_config --bindir`, then the
// highest version under /usr/lib/postgresql/*/bin (Debian, Ubuntu), then
// $PATH.
//
// PostgreSQL refuses to run as root. When the tests run as root, the
// cluster is created and run as the "postgres" system user (created by
// the distribution's postgresql package; override with
// MATRIXOS_PGTEST_USER), and its directory is owned by that user.
package pgtest
