package testnode

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/spectest"
)

// FakeAppservice plays an appservice's HTTP side for delivery tests: it
// answers pings, checks every transaction against the spec's schema,
// records it, deduplicates them by transaction
// ID as the spec says an appservice does, fails the test when a
// transaction comes again with another body or without the hs_token, and
// answers 500 while failing.
type FakeAppservice struct {
	t       testing.TB
	srv     *httptest.Server
	hsToken string
	spec    *spectest.Spec

	mu      sync.Mutex
	failing bool
	delay   time.Duration
	bodies  map[string][]byte // first body seen of each transaction ID
	tries   map[string]int    // requests per transaction ID
	acked   []string          // transaction IDs answered 200, in order
	txns    map[string]*ASTransaction
	events  []ASEvent // events of acknowledged transactions, in order
}

// ASTransaction is what the fake decodes of a transaction.
type ASTransaction struct {
	Events           []ASEvent         `json:"events"`
	Ephemeral        []json.RawMessage `json:"ephemeral"`
	MSC2409Ephemeral []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
	Raw              json.RawMessage   `json:"-"`
}

// ASEvent is what the fake decodes of a transaction's event.
type ASEvent struct {
	EventID  string  `json:"event_id"`
	RoomID   string  `json:"room_id"`
	Type     string  `json:"type"`
	Sender   string  `json:"sender"`
	StateKey *string `json:"state_key"`
	Unsigned struct {
		TransactionID string `json:"transaction_id"`
	} `json:"unsigned"`
	Content struct {
		Body string `json:"body"`
	} `json:"content"`
}

// NewFakeAppservice listens on a loopback port until the test ends.
func NewFakeAppservice(t testing.TB, hsToken string) *FakeAppservice {
	f := &FakeAppservice{t: t, hsToken: hsToken, spec: spectest.LoadDefault(t),
		bodies: map[string][]byte{}, tries: map[string]int{}, txns: map[string]*ASTransaction{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the appservice's url, for its registration.
func (f *FakeAppservice) URL() string { return f.srv.URL }

func (f *FakeAppservice) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/_matrix/app/v1/ping" && r.Header.Get("Authorization") == "Bearer "+f.hsToken {
		w.Write([]byte("{}"))
		return
	}
	txnID, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")
	if r.Method != http.MethodPut || !ok {
		http.Error(w, `{"errcode":"M_UNRECOGNIZED"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.hsToken {
		f.t.Errorf("transaction %s without the hs_token: %q", txnID, r.Header.Get("Authorization"))
		http.Error(w, `{"errcode":"M_FORBIDDEN"}`, http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := f.spec.ValidateRequest(r.Method, r.URL.Path, body); err != nil {
		f.t.Errorf("transaction %s does not follow the spec: %v", txnID, err)
	}
	f.mu.Lock()
	delay := f.delay
	f.mu.Unlock()
	time.Sleep(delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries[txnID]++
	if first, seen := f.bodies[txnID]; seen && !bytes.Equal(first, body) {
		f.t.Errorf("transaction %s sent again with another body:\n%s\n%s", txnID, first, body)
	} else if !seen {
		f.bodies[txnID] = body
	}
	if f.failing {
		http.Error(w, `{"errcode":"M_UNKNOWN"}`, http.StatusInternalServerError)
		return
	}
	if _, done := f.txns[txnID]; !done {
		txn := &ASTransaction{Raw: body}
		if err := json.Unmarshal(body, txn); err != nil {
			f.t.Errorf("transaction %s: %v", txnID, err)
		}
		f.txns[txnID] = txn
		f.acked = append(f.acked, txnID)
		f.events = append(f.events, txn.Events...)
	}
	w.Write([]byte("{}"))
}

// SetFailing makes the appservice answer 500 (true) or accept (false).
func (f *FakeAppservice) SetFailing(failing bool) {
	f.mu.Lock()
	f.failing = failing
	f.mu.Unlock()
}

// SetDelay makes the appservice take d before it answers.
func (f *FakeAppservice) SetDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// Events returns the events of the transactions accepted so far, in order.
func (f *FakeAppservice) Events() []ASEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ASEvent(nil), f.events...)
}

// Transactions returns the transactions accepted so far, in order.
func (f *FakeAppservice) Transactions() []*ASTransaction {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*ASTransaction, len(f.acked))
	for i, txnID := range f.acked {
		out[i] = f.txns[txnID]
	}
	return out
}

// Tries is how often the transaction was sent.
func (f *FakeAppservice) Tries(txnID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[txnID]
}

// WaitRetried waits until a transaction not yet accepted was sent at least
// n times, and returns its ID.
func (f *FakeAppservice) WaitRetried(n int) string {
	f.t.Helper()
	var txnID string
	WaitFor(f.t, 30*time.Second, "a failed transaction sent again", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for id, tries := range f.tries {
			if _, acked := f.txns[id]; !acked && tries >= n {
				txnID = id
				return true
			}
		}
		return false
	})
	return txnID
}

// WaitBody waits until an event with the body arrived and returns the
// events accepted by then.
func (f *FakeAppservice) WaitBody(body string) []ASEvent {
	f.t.Helper()
	var evs []ASEvent
	WaitFor(f.t, 30*time.Second, "event "+body+" at the appservice", func() bool {
		evs = f.Events()
		for _, ev := range evs {
			if ev.Content.Body == body {
				return true
			}
		}
		return false
	})
	return evs
}

// WaitFor polls until cond holds, failing the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WithAppservices writes registration files (name to YAML) into the node's
// <data>/appservices before it starts, as an administrator would.
func WithAppservices(t testing.TB, files map[string]string) Option {
	return func(cfg *config.Config) {
		if err := WriteAppservices(cfg.DataDir, files); err != nil {
			t.Fatal(err)
		}
	}
}

// WriteAppservices writes registration files into dataDir/appservices.
func WriteAppservices(dataDir string, files map[string]string) error {
	dir := filepath.Join(dataDir, "appservices")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}
