package oauth

import (
	"context"
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
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	s := New(db, slog.New(slog.DiscardHandler), nil, Options{BaseURL: func() string { return "https://example.org" }})
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
