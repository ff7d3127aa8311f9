package oauth

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/storage"
	"maunium.net/go/mautrix/id"
)

// TestPruneClients checks which registrations pruneClients removes: one
// nobody used after unusedClientLifetime, one idle past
// idleClientLifetime, never one that still holds a session or was used
// recently.
func TestPruneClients(t *testing.T) {
	s, ctx := newPruneService(t)
	now := time.Now()
	day := 24 * time.Hour
	clients := []struct {
		id         string
		registered time.Time
		used       time.Time // zero: never
		session    bool
		kept       bool
	}{
		{"fresh", now.Add(-time.Hour), time.Time{}, false, true},
		{"unused", now.Add(-2 * day), time.Time{}, false, false},
		{"used-recently", now.Add(-200 * day), now.Add(-10 * day), false, true},
		{"idle", now.Add(-200 * day), now.Add(-100 * day), false, false},
		{"idle-with-session", now.Add(-200 * day), now.Add(-100 * day), true, true},
	}
	for _, c := range clients {
		cl := &Client{ID: c.id, IssuedAt: c.registered.Unix()}
		if err := s.storeClient(ctx, cl); err != nil {
			t.Fatal(err)
		}
		if !c.used.IsZero() {
			if err := s.markUsed(ctx, cl, c.used); err != nil {
				t.Fatal(err)
			}
		}
		if c.session {
			if err := s.recordSession(ctx, session{UserID: "@a:example.org", DeviceID: id.DeviceID("D" + c.id), ClientID: c.id, Scope: "openid"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.pruneClients(ctx, now); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		_, err := s.client(ctx, c.id)
		if kept := err == nil; kept != c.kept {
			t.Errorf("client %s: kept %v, want %v (err %v)", c.id, kept, c.kept, err)
		}
	}
}

// TestPruneClientsCapsUnused checks that beyond maxUnusedClients
// registrations nobody used, the oldest go, even within their day.
func TestPruneClientsCapsUnused(t *testing.T) {
	s, ctx := newPruneService(t)
	old := maxUnusedClients
	maxUnusedClients = 3
	t.Cleanup(func() { maxUnusedClients = old })
	now := time.Now()
	for i := range 6 {
		if err := s.storeClient(ctx, &Client{ID: fmt.Sprint("c", i), IssuedAt: now.Add(time.Duration(i-10) * time.Minute).Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.pruneClients(ctx, now); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		_, err := s.client(ctx, fmt.Sprint("c", i))
		if kept, want := err == nil, i >= 3; kept != want {
			t.Errorf("client c%d: kept %v, want %v", i, kept, want)
		}
	}
}

// TestClientsBeforeUpgradeCountAsUsed checks that the migration adding
// last_used_ts does not make every client registered before it look
// never used (and so pruned a day later).
func TestClientsBeforeUpgradeCountAsUsed(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, Migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO oauth_clients (client_id, metadata, created_ts) VALUES ('old', '{}', 1)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	var used int64
	if err := db.QueryRow(ctx, "SELECT last_used_ts FROM oauth_clients WHERE client_id = 'old'").Scan(&used); err != nil {
		t.Fatal(err)
	}
	if since := time.Since(time.Unix(used, 0)); since < 0 || since > time.Hour {
		t.Fatalf("last_used_ts after the upgrade is %d, want about now", used)
	}
}

func newPruneService(t *testing.T) (*Service, context.Context) {
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	return New(db, slog.New(slog.DiscardHandler), nil, Options{BaseURL: func() string { return "https://example.org" }}), ctx
}
