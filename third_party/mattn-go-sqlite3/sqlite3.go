// Package sqlite3 stands in for github.com/mattn/go-sqlite3 in Matrix OS
// builds: go.mod replaces that module with this directory.
//
// mautrix-go's bridgev2/matrix imports go.mau.fi/util/dbutil/litestream,
// which, when cgo is on, registers its SQLite drivers ("sqlite3-fk-wal",
// "sqlite3-fk-wal-fullsync", "litestream") on mattn's cgo SQLite, and
// mattn's package registers the driver name "sqlite3" that Matrix OS's
// storage already registers for the ncruces driver: linking both would
// panic at start-up ("Register called twice for driver sqlite3"), and
// would link a second SQLite. This package keeps the few names litestream
// uses and runs them on ncruces's SQLite: its drivers open connections
// through the ncruces driver and apply their connect hooks (the pragmas)
// to them. It registers no driver itself.
package sqlite3

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"

	ncruces "github.com/ncruces/go-sqlite3"
	ncdriver "github.com/ncruces/go-sqlite3/driver"
)

// SQLITE_FCNTL_PERSIST_WAL is SQLite's file control opcode of that name.
const SQLITE_FCNTL_PERSIST_WAL = int(ncruces.FCNTL_PERSIST_WAL)

// SQLiteDriver is a database/sql driver on ncruces's SQLite that runs
// ConnectHook on each new connection.
type SQLiteDriver struct {
	ConnectHook func(*SQLiteConn) error
}

// Open opens a connection to the database named by dsn (a file name or a
// "file:" URI, as the ncruces driver reads it).
func (d *SQLiteDriver) Open(dsn string) (driver.Conn, error) {
	c, err := (&ncdriver.SQLite{}).Open(dsn)
	if err != nil {
		return nil, err
	}
	if d.ConnectHook != nil {
		if err := d.ConnectHook(&SQLiteConn{conn: c}); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// SQLiteConn is a connection as a connect hook sees it.
type SQLiteConn struct {
	conn driver.Conn
}

// Exec runs a statement on the connection.
func (c *SQLiteConn) Exec(query string, args []driver.Value) (driver.Result, error) {
	exec, ok := c.conn.(driver.ExecerContext)
	if !ok {
		return nil, errors.New("sqlite3: connection cannot execute statements")
	}
	named := make([]driver.NamedValue, len(args))
	for i, v := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return exec.ExecContext(context.Background(), query, named)
}

// RegisterFunc is refused: Matrix OS registers no SQL functions through
// this package.
func (c *SQLiteConn) RegisterFunc(name string, impl any, pure bool) error {
	return fmt.Errorf("sqlite3: registering SQL function %q is not supported on this driver", name)
}

// SetFileControlInt sets a file control of the schema's database file.
func (c *SQLiteConn) SetFileControlInt(schema string, op int, arg int) error {
	raw, ok := c.conn.(interface{ Raw() *ncruces.Conn })
	if !ok {
		return errors.New("sqlite3: connection has no file controls")
	}
	_, err := raw.Raw().FileControl(schema, ncruces.FcntlOpcode(op), arg)
	return err
}
