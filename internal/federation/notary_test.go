package federation

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/storage"
)

// hangingServer accepts connections and never answers.
func hangingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}

// TestNotaryQueryIsBounded: a key query naming several servers that never
// answer returns within the notary's fetch deadline, not one deadline per
// server, and leaves them out.
func TestNotaryQueryIsBounded(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.Open(ctx, filepath.Join(t.TempDir(), "t.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, db, log, Options{ServerName: "me.example", Key: federation.GenerateSigningKey(), AllowPrivateNetworks: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	s.notaryTimeout = 500 * time.Millisecond
	servers := map[string]any{}
	for range 4 {
		servers[hangingServer(t)] = map[string]any{}
	}
	body, _ := json.Marshal(map[string]any{"server_keys": servers})
	start := time.Now()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/_matrix/key/v2/query", strings.NewReader(string(body))))
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("query of 4 silent servers took %s", took)
	}
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"server_keys":[]}` {
		t.Fatalf("answer: %d %s", rec.Code, rec.Body)
	}
}
