package federation

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"
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
	db := testDB(t, log)
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

// TestNotaryQueriesShareOneFetch: concurrent key queries that all need a
// server's keys fetched make one request to it, not one each.
func TestNotaryQueriesShareOneFetch(t *testing.T) {
	key := federation.GenerateSigningKey()
	k, hits := stubKeyRing(t, func(*http.Request) []byte {
		time.Sleep(200 * time.Millisecond) // the queries overlap the fetch
		return ownResponse(t, "slow.example", key)
	})
	s := &Service{serverName: "me.example", log: k.log, opts: Options{Key: k.own.key}, notaryTimeout: 5 * time.Second, Keys: k}
	// Later than any response: every query wants a fetch.
	future := time.Now().Add(24 * time.Hour).UnixMilli()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := s.notarise(context.Background(), map[string]map[id.KeyID]int64{"slow.example": {key.ID: future}}, future); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := hits.Load(); n != 1 {
		t.Fatalf("4 concurrent queries made %d fetches, want 1", n)
	}
}
