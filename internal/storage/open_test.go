package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseDSN(t *testing.T) {
	for _, tc := range []struct {
		dsn     string
		dialect Dialect
		path    string
		wantErr string
	}{
		{dsn: "postgres://u:p@localhost/db?sslmode=disable", dialect: Postgres, path: "postgres://u:p@localhost/db?sslmode=disable"},
		{dsn: "postgresql:///db?host=/run/postgresql", dialect: Postgres, path: "postgresql:///db?host=/run/postgresql"},
		{dsn: "/var/lib/matrixos/matrixos.db", dialect: SQLite, path: "/var/lib/matrixos/matrixos.db"},
		{dsn: "data/matrixos.db", dialect: SQLite, path: "data/matrixos.db"},
		{dsn: "sqlite:/srv/m.db", dialect: SQLite, path: "/srv/m.db"},
		{dsn: "./mysql:x", dialect: SQLite, path: "./mysql:x"},
		{dsn: "mysql://x", wantErr: "want a postgres://"},
		{dsn: "postgress://u@h/db", wantErr: "want a postgres://"},
		{dsn: "file:m.db", wantErr: "want a postgres://"},
		{dsn: "mysql://u:secret@h/db", wantErr: "xxxxx"},
		{dsn: "sqlite:", wantErr: "empty SQLite path"},
	} {
		d, path, err := ParseDSN(tc.dsn)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDSN(%q) = %v, %q, %v; want error containing %q", tc.dsn, d, path, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseDSN(%q) error shows the password: %v", tc.dsn, err)
			}
			continue
		}
		if err != nil || d != tc.dialect || path != tc.path {
			t.Errorf("ParseDSN(%q) = %v, %q, %v; want %v, %q", tc.dsn, d, path, err, tc.dialect, tc.path)
		}
	}
	if _, err := Open(context.Background(), "mysql://x", nil); err == nil {
		t.Error("Open accepted mysql://x")
	}
}

// TestSQLiteFilesPrivate: the database file, its WAL and its shared-memory
// index are created 0600 even with a permissive umask in a 0755 directory
// (a Docker volume, systemd's StateDirectory), and an older 0644 file is
// tightened.
func TestSQLiteFilesPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "matrixos.db")
	checkModes := func() {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatalf("stat: %v", err)
			}
			if perm := st.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s has mode %v, want 0600", filepath.Base(p), perm)
			}
		}
	}
	db, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkModes()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkModes()
}
