//go:build goolm

package host

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	_ "go.mau.fi/util/dbutil/litestream" // its drivers, on the go.mod stand-in for mattn's
)

// TestDatabasePragmas checks that the bridge's database, and the SQLite
// drivers mautrix registers (run on ncruces through the stand-in for
// mattn/go-sqlite3), have foreign keys on and write-ahead logging.
func TestDatabasePragmas(t *testing.T) {
	ctx := context.Background()
	db, err := OpenDatabase(filepath.Join(t.TempDir(), "bridge.db"), "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkPragmas(t, "bridge database", db.RawDB)
	if _, err := db.Exec(ctx, "CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (a INTEGER REFERENCES a(id))"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO b (a) VALUES (42)"); err == nil {
		t.Error("a row naming a missing parent was inserted: foreign keys are not enforced")
	}

	for _, name := range []string{"sqlite3-fk-wal", "sqlite3-fk-wal-fullsync"} {
		raw, err := sql.Open(name, "file:"+filepath.Join(t.TempDir(), "x.db")+"?_txlock=immediate")
		if err != nil {
			t.Fatal(err)
		}
		checkPragmas(t, name, raw)
		raw.Close()
	}
}

func checkPragmas(t *testing.T, what string, db *sql.DB) {
	t.Helper()
	var fk int
	var mode string
	if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if fk != 1 || mode != "wal" {
		t.Errorf("%s: foreign_keys=%d journal_mode=%s, want 1 and wal", what, fk, mode)
	}
}
