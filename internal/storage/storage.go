package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"
	"github.com/ncruces/go-sqlite3/ext/fts5"
)

// Dialect names the SQL engine behind a DB.
type Dialect int

const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is the node's database. Reads go straight to a connection pool; writes
// are queued to a single writer that groups them into batched transactions
// (group commit), so many concurrent writers share one fsync.
//
// DB also owns the node's stream position: a single counter that orders every
// durable change a client can sync (events, account data, receipts, ...).
// Positions are handed out inside write transactions, so commit order equals
// position order, and Visible reports the highest position whose transaction
// has committed and whose AfterCommit functions have run.
type DB struct {
	Dialect Dialect

	read  *sql.DB
	write *sql.DB
	log   *slog.Logger

	readStmts, writeStmts *stmtCache // SQLite only

	writes  chan *writeReq
	stop    chan struct{}
	stopped chan struct{}
	closing sync.Once

	pos     int64        // last allocated position; writer goroutine only
	stored  int64        // stream_position's committed value; writer goroutine only
	visible atomic.Int64 // highest committed position

	checkpointDone chan struct{} // closed when the checkpointer has stopped
	wal            walState      // SQLite only

	// origin tells the changes this DB records from those of other
	// processes (see WatchChanges).
	origin string
}

// ParseDSN tells which engine a database setting names: a postgres:// or
// postgresql:// URL is PostgreSQL; "sqlite:PATH" or a plain file path is
// SQLite (the path is returned). Anything else that looks like a URL
// ("mysql://x", the typo "postgress://x") is refused rather than taken for a
// file name.
func ParseDSN(dsn string) (Dialect, string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, err := url.Parse(dsn); err != nil {
			return Postgres, "", fmt.Errorf("bad PostgreSQL URL: %w", err)
		}
		return Postgres, dsn, nil
	}
	path, explicit := strings.CutPrefix(dsn, "sqlite:")
	if !explicit && urlScheme.MatchString(dsn) {
		return SQLite, "", fmt.Errorf("%q: want a postgres:// or postgresql:// URL, sqlite:PATH, or a file path for SQLite", redactDSN(dsn))
	}
	if path == "" {
		return SQLite, "", errors.New("empty SQLite path")
	}
	return SQLite, path, nil
}

// urlScheme matches the scheme of anything written like a URL ("mysql:",
// "postgress:"); a plain path that should contain one can start with "./".
var urlScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// redactDSN hides a password in a URL-like database setting.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return dsn
}

// Open opens the database named by dsn, as ParseDSN reads it.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialect, path, err := ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	db := &DB{
		log:     log,
		writes:  make(chan *writeReq, 4096),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		origin:  rand.Text(),
	}
	if dialect == Postgres {
		db.Dialect = Postgres
		db.read, err = sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		db.read.SetMaxOpenConns(32)
		db.read.SetMaxIdleConns(16)
		db.write = db.read
	} else {
		db.Dialect = SQLite
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("create database directory: %w", err)
			}
		}
		// The database holds password hashes and private messages: only
		// its owner may read it, whatever the umask. modeof gives the WAL
		// the database file's mode; the shared-memory index has no such
		// option, so it is created here first (SQLite initialises an empty
		// one).
		for _, p := range []string{path, path + "-shm"} {
			if err := createPrivate(p); err != nil {
				return nil, err
			}
		}
		pragmas := "&_pragma=busy_timeout(10000)&_pragma=foreign_keys(0)&_pragma=cache_size(-16000)&_pragma=temp_store(memory)&modeof=" + url.QueryEscape(path)
		// Checkpoints run in the background (checkpointer), not inside
		// the commit that happens to fill the WAL, which would stall that
		// write and every one queued behind it: the WAL hook that
		// db.wal.watch installs replaces SQLite's automatic checkpoint
		// (which is itself a WAL hook, so no wal_autocheckpoint pragma,
		// which would replace the hook in turn).
		db.write, err = driver.Open("file:"+path+"?_txlock=immediate&_pragma=journal_mode(wal)&_pragma=synchronous(full)"+pragmas, func(c *sqlite3.Conn) error {
			if err := fts5.Register(c); err != nil {
				return err
			}
			return db.wal.watch(c)
		})
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		// One writer goroutine uses one connection at a time; the second
		// lets the statement cache prepare a query while a transaction
		// holds the first.
		db.write.SetMaxOpenConns(2)
		db.write.SetMaxIdleConns(2)
		db.write.SetConnMaxLifetime(0)
		db.write.SetConnMaxIdleTime(0)
		// Create the file and switch it to WAL before readers attach.
		if err := db.write.PingContext(ctx); err != nil {
			db.write.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		// Tighten the files an older version created readable by others.
		if err := restrictModes(path, path+"-wal", path+"-shm"); err != nil {
			db.write.Close()
			return nil, err
		}
		db.read, err = driver.Open("file:"+path+"?_pragma=query_only(1)"+pragmas, fts5.Register)
		if err != nil {
			db.write.Close()
			return nil, fmt.Errorf("open sqlite readers: %w", err)
		}
		db.read.SetMaxOpenConns(8)
		db.read.SetMaxIdleConns(8)
		db.read.SetConnMaxIdleTime(0)
		db.read.SetConnMaxLifetime(0)
	}
	if err := db.read.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", db.Dialect, err)
	}
	if db.Dialect == SQLite {
		db.readStmts = newStmtCache(db.read, maxCachedStmts)
		db.writeStmts = newStmtCache(db.write, maxCachedStmts)
	}
	if err := db.Migrate(ctx, coreMigrations); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.loadPosition(ctx); err != nil {
		db.Close()
		return nil, err
	}
	go db.writer()
	if db.Dialect == SQLite {
		db.checkpointDone = make(chan struct{})
		go db.checkpointer()
	}
	return db, nil
}

// createPrivate creates the SQLite file with mode 0600 if it does not exist.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create sqlite %s: %w", path, err)
	}
	return f.Close()
}

// restrictModes removes group and other permissions from the files that
// exist among paths.
func restrictModes(paths ...string) error {
	for _, p := range paths {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if perm := st.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(p, perm&^0o077); err != nil {
				return fmt.Errorf("make %s private: %w", p, err)
			}
		}
	}
	return nil
}

// Close stops the writer after the queued writes are done, and closes the
// connections.
func (db *DB) Close() error {
	db.closing.Do(func() {
		close(db.stop)
	})
	select {
	case <-db.stopped:
	case <-time.After(30 * time.Second):
	}
	if db.checkpointDone != nil {
		<-db.checkpointDone
		// Leave a small database file behind, with no WAL to replay.
		db.write.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	}
	db.readStmts.close()
	db.writeStmts.close()
	var errs []error
	if db.write != nil && db.write != db.read {
		errs = append(errs, db.write.Close())
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	return errors.Join(errs...)
}

// rewrite turns $1-style placeholders into SQLite's ?1 form. Queries are
// written once, in PostgreSQL's style. The statement caches keep the
// SQLite form of the queries they hold, so this runs only for the queries
// they cannot prepare.
func (db *DB) rewrite(q string) string {
	if db.Dialect == Postgres {
		return q
	}
	return sqliteText(q)
}

// sqliteText is q with SQLite's placeholders.
func sqliteText(q string) string { return strings.ReplaceAll(q, "$", "?") }

// Placeholders returns n query placeholders numbered from start, for an
// IN list: "$2, $3, $4" for Placeholders(2, 3).
func Placeholders(start, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(start + i))
	}
	return b.String()
}

// limitRE finds a trailing "LIMIT $n [OFFSET $m]".
var limitRE = regexp.MustCompile(`(?i)\bLIMIT\s+\$(\d+)(?:\s+OFFSET\s+\$(\d+))?\s*$`)

// inlineLimit writes a trailing LIMIT (and OFFSET) parameter into the SQL
// text as a number, for SQLite: a bound LIMIT makes SQLite plan the query
// again on every execution (it optimises for the limit's value), which
// undoes the statement cache. Only the last parameters are inlined, and
// only integers, so the remaining placeholders keep their numbers.
func (db *DB) inlineLimit(q string, args []any) (string, []any) {
	if db.Dialect != SQLite || !strings.Contains(q, "LIMIT") {
		return q, args
	}
	m := limitRE.FindStringSubmatchIndex(q)
	if m == nil {
		return q, args
	}
	idx := []int{}
	for _, g := range [][2]int{{m[2], m[3]}, {m[4], m[5]}} {
		if g[0] >= 0 {
			n, err := strconv.Atoi(q[g[0]:g[1]])
			if err != nil {
				return q, args
			}
			idx = append(idx, n)
		}
	}
	// The parameters must be the trailing ones, in order.
	for i, n := range idx {
		if n != len(args)-len(idx)+i+1 {
			return q, args
		}
	}
	lits := make([]string, len(idx))
	for i, n := range idx {
		switch v := args[n-1].(type) {
		case int:
			lits[i] = strconv.Itoa(v)
		case int64:
			lits[i] = strconv.FormatInt(v, 10)
		default:
			return q, args
		}
	}
	tail := "LIMIT " + lits[0]
	if len(lits) == 2 {
		tail += " OFFSET " + lits[1]
	}
	return q[:m[0]] + tail, args[:len(args)-len(idx)]
}

// Query runs a read query.
func (db *DB) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q, args = db.inlineLimit(q, args)
	if cs := db.readStmts.get(ctx, q); cs != nil {
		defer db.readStmts.release(cs)
		return cs.st.QueryContext(ctx, args...)
	}
	return db.read.QueryContext(ctx, db.rewrite(q), args...)
}

// QueryRow runs a read query that returns at most one row.
func (db *DB) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	q, args = db.inlineLimit(q, args)
	if cs := db.readStmts.get(ctx, q); cs != nil {
		defer db.readStmts.release(cs)
		return cs.st.QueryRowContext(ctx, args...)
	}
	return db.read.QueryRowContext(ctx, db.rewrite(q), args...)
}

// Visible is the highest stream position whose write has committed and
// whose AfterCommit functions have run.
func (db *DB) Visible() int64 { return db.visible.Load() }

// Tx is one write inside a batched transaction.
type Tx struct {
	db         *DB
	tx         *sql.Tx
	batch      *batchTx
	afterFns   []func()
	visibleFns []func()
	abortFns   []func()
	positions  int
}

// batchTx is the SQL transaction that one batch of writes shares, with
// the prepared statements bound to it. Binding a prepared statement to a
// transaction (sql.Tx.StmtContext) allocates a statement and registers it
// with the pool on every call; a batch runs the same few statements once
// per write, so each is bound once per batch instead.
type batchTx struct {
	db    *DB
	tx    *sql.Tx
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// stmt returns the prepared form of q bound to the batch's transaction,
// or nil when q cannot be prepared (or the database is PostgreSQL, whose
// driver caches prepared statements itself).
func (b *batchTx) stmt(ctx context.Context, q string) *sql.Stmt {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st, ok := b.stmts[q]; ok {
		return st
	}
	cs := b.db.writeStmts.get(ctx, q)
	if cs == nil {
		return nil
	}
	// The transaction's statement keeps what it uses of the cached one
	// until the transaction ends, even if the cache closes it.
	st := b.tx.StmtContext(ctx, cs.st)
	b.db.writeStmts.release(cs)
	if b.stmts == nil {
		b.stmts = map[string]*sql.Stmt{}
	}
	b.stmts[q] = st
	return st
}

// exec runs q, prepared when it can be, in the batch's transaction.
func (b *batchTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := b.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return b.tx.ExecContext(ctx, b.db.rewrite(q), args...)
}

// stmt returns the prepared form of q bound to the transaction, or nil.
func (tx *Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	return tx.batch.stmt(ctx, q)
}

// Exec runs a statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := tx.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.tx.ExecContext(ctx, tx.db.rewrite(q), args...)
}

// Query runs a query in the transaction.
func (tx *Tx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q, args = tx.db.inlineLimit(q, args)
	if st := tx.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.tx.QueryContext(ctx, tx.db.rewrite(q), args...)
}

// QueryRow runs a single-row query in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	q, args = tx.db.inlineLimit(q, args)
	if st := tx.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.tx.QueryRowContext(ctx, tx.db.rewrite(q), args...)
}

// NextPos allocates the next stream position. Positions become visible to
// readers (DB.Visible) once the transaction commits.
func (tx *Tx) NextPos() int64 {
	tx.db.pos++
	tx.positions++
	return tx.db.pos
}

// Dialect reports the database engine.
func (tx *Tx) Dialect() Dialect { return tx.db.Dialect }

// AfterCommit registers fn to run once the transaction has committed
// successfully, before its stream positions become visible (DB.Visible)
// and before Write returns: in-memory views of committed data that fn
// updates are current for every position a reader can see. fn runs on the
// writer goroutine, so it must be quick and must not wait for a lock that
// anyone holds while queueing or awaiting a write.
func (tx *Tx) AfterCommit(fn func()) { tx.afterFns = append(tx.afterFns, fn) }

// AfterVisible registers fn to run once the transaction has committed and
// its stream positions are visible (DB.Visible), before Write returns:
// every reader that starts then sees what the write did and every view
// its AfterCommit functions updated. It is for wake-ups of readers that
// wait for such writes, which then need not wait for the writer's caller
// to learn the outcome. fn runs on the writer goroutine, with
// AfterCommit's limits.
func (tx *Tx) AfterVisible(fn func()) { tx.visibleFns = append(tx.visibleFns, fn) }

// AfterAbort registers fn to run when the write does not commit: its own
// function failed (its savepoint was rolled back) or its batch failed.
// Exactly one of a write's AfterCommit and AfterAbort sets runs, so an
// in-memory reservation made inside a write can be released on either
// outcome. fn runs on the writer goroutine, with AfterCommit's limits.
func (tx *Tx) AfterAbort(fn func()) { tx.abortFns = append(tx.abortFns, fn) }

// aborted runs the functions registered with AfterAbort.
func (tx *Tx) aborted() {
	for _, f := range tx.abortFns {
		f()
	}
	tx.abortFns = nil
}

type writeReq struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error
	tx   Tx
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("storage: database closed")

// Write runs fn in a write transaction and returns once it has committed
// durably (or failed). Writes from concurrent callers are batched into one
// transaction; each fn runs inside its own savepoint so a failing fn does not
// affect the others. fn must not block on other writes.
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) error {
	return db.Enqueue(ctx, fn)()
}

// Enqueue queues fn like Write but returns at once; the returned function
// waits for the outcome. Writes run in the order they were queued, so a
// caller holding a lock while queueing gets its writes applied in that
// lock's order without holding it during the commit.
func (db *DB) Enqueue(ctx context.Context, fn func(tx *Tx) error) (wait func() error) {
	done := make(chan error, 1) // the writer may clear req.done once it has answered
	req := &writeReq{ctx: context.WithoutCancel(ctx), fn: fn, done: done}
	select {
	case db.writes <- req:
	case <-db.stop:
		return func() error { return ErrClosed }
	case <-ctx.Done():
		err := ctx.Err()
		return func() error { return err }
	}
	// Once queued, the write will be attempted; wait for its outcome even if
	// the caller's context ends, so an acknowledged result is never a guess.
	return func() error { return <-done }
}

const maxBatch = 256

func (db *DB) writer() {
	defer close(db.stopped)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-db.writes:
		case <-db.stop:
			// Drain what is queued, then stop.
			for {
				select {
				case r := <-db.writes:
					db.commitBatch([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-db.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commitBatch(batch)
		db.finishCheckpoint()
	}
}

func (db *DB) commitBatch(batch []*writeReq) {
	ctx := context.Background()
	start := time.Now()
	startPos := db.pos
	fail := func(err error) {
		db.pos = startPos
		for _, r := range batch {
			r.tx.aborted()
			if r.done != nil {
				r.done <- err
				r.done = nil
			}
		}
	}
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin write transaction: %w", err))
		return
	}
	results := make([]error, len(batch))
	single := len(batch) == 1
	shared := &batchTx{db: db, tx: sqlTx}
	for i, r := range batch {
		r.tx = Tx{db: db, tx: sqlTx, batch: shared}
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if single {
			results[i] = r.fn(&r.tx)
			continue
		}
		if _, err := shared.exec(ctx, "SAVEPOINT w"); err != nil {
			sqlTx.Rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		if err := r.fn(&r.tx); err != nil {
			results[i] = err
			if _, rerr := shared.exec(ctx, "ROLLBACK TO SAVEPOINT w"); rerr != nil {
				sqlTx.Rollback()
				fail(fmt.Errorf("rollback to savepoint: %w", rerr))
				return
			}
		}
		if _, err := shared.exec(ctx, "RELEASE SAVEPOINT w"); err != nil {
			sqlTx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if single && results[0] != nil {
		sqlTx.Rollback()
		fail(results[0])
		return
	}
	stored, err := db.persistPosition(ctx, shared)
	if err != nil {
		sqlTx.Rollback()
		fail(err)
		return
	}
	commitStart := time.Now()
	if err := sqlTx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	db.stored = stored
	commitSeconds.Observe(time.Since(commitStart).Seconds())
	// Publish to memory first, so that no reader sees a position whose
	// in-memory view is not yet updated.
	for i, r := range batch {
		if results[i] != nil {
			r.tx.aborted()
			continue
		}
		for _, f := range r.tx.afterFns {
			f()
		}
	}
	db.visible.Store(db.pos)
	for i, r := range batch {
		if results[i] == nil {
			for _, f := range r.tx.visibleFns {
				f()
			}
		}
	}
	writeBatchSize.Observe(float64(len(batch)))
	writeBatchSeconds.Observe(time.Since(start).Seconds())
	for i, r := range batch {
		r.done <- results[i]
	}
}

func (db *DB) loadPosition(ctx context.Context) error {
	var pos sql.NullInt64
	if err := db.read.QueryRowContext(ctx, "SELECT value FROM stream_position WHERE id = 1").Scan(&pos); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("load stream position: %w", err)
	}
	db.pos, db.stored = pos.Int64, pos.Int64
	db.visible.Store(db.pos)
	return nil
}

var coreMigrations = []Migration{{
	Component: "storage",
	Version:   1,
	SQL: `
CREATE TABLE stream_position (id INTEGER PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE sequences (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
`,
}, {
	Component: "storage",
	Version:   2,
	SQL:       "DROP TABLE sequences;", // never used
}, changesMigration}

// positionReserve is how far past the positions a batch hands out the
// stored stream position runs ahead. The stored value only has to be at
// or past every position ever handed out, so that a restart never hands
// one out again; storing it with room to spare leaves the row, one page
// of the commit, out of all but one batch in positionReserve positions.
// A restart starts after the reserve: positions have gaps anyway.
const positionReserve = 1024

// persistPosition records, inside the batch's transaction, a stream
// position at or past every position the batch handed out, when the one
// stored is not, and returns the value stored once the batch commits.
func (db *DB) persistPosition(ctx context.Context, tx *batchTx) (int64, error) {
	if db.pos <= db.stored {
		return db.stored, nil
	}
	reserve := db.pos + positionReserve
	if _, err := tx.exec(ctx, `INSERT INTO stream_position (id, value) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET value = excluded.value`, reserve); err != nil {
		return 0, fmt.Errorf("save stream position: %w", err)
	}
	return reserve, nil
}

// Querier runs a read: a *DB or a *Tx.
type Querier interface {
	Query(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// Column runs q, which selects one column, and returns its values.
func Column[T any](ctx context.Context, db Querier, q string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
