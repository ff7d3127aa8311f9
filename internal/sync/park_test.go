package sync_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/sync"
	"github.com/matrixos/matrixos/internal/testnode"
)

// noPresence leaves presence out of the answers compared below: its
// last_active_ago is the time of the build.
const noPresence = `{"presence":{"not_types":["*"]}}`

// TestParkedLongPolls holds long-polls that have to wait: they hold no
// goroutine while they wait, a send answers each with exactly the bytes
// and headers the handler answers the same request with, each
// connection then serves its next request (which times out with an
// answer), and clients that close while parked leave nothing behind.
func TestParkedLongPolls(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.PublicRoom(t, alice)
	since := testnode.SyncOnce(t, alice, "", 0).NextBatch
	query := url.Values{"since": {since}, "timeout": {"30000"}, "filter": {noPresence}}
	path := "/_matrix/client/v3/sync?" + query.Encode()
	token := alice.AccessToken
	addr := n.Addr

	baseline := runtime.NumGoroutine()
	const polls = 100
	conns := make([]net.Conn, polls)
	readers := make([]*bufio.Reader, polls)
	for i := range conns {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[i], readers[i] = conn, bufio.NewReader(conn)
		getOn(t, conn, path, token)
	}
	waitFor(t, func() bool { return n.Sync.Waiting() == polls }, "long-polls waiting")
	if g := runtime.NumGoroutine(); g > baseline+polls/4 {
		t.Errorf("%d goroutines with %d long-polls waiting, %d before", g, polls, baseline)
	}

	if _, err := alice.SendText(t.Context(), room, "wake up"); err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for i, br := range readers {
		resp, body := readAnswer(t, br)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("wake up")) {
			t.Fatalf("long-poll %d: %d %s", i, resp.StatusCode, body)
		}
		if i == 0 {
			// The same request through the handler, which cannot park.
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			n.Handler().ServeHTTP(rec, req)
			if !bytes.Equal(withoutAge(rec.Body.Bytes()), withoutAge(body)) {
				t.Fatalf("parked answer differs from the handler's:\n%s\n%s", body, rec.Body.Bytes())
			}
			// Content-Length is the body's own: the events' ages, left out
			// of the comparison, may differ in their number of digits.
			if got, want := resp.Header.Get("Content-Length"), strconv.Itoa(len(body)); got != want {
				t.Errorf("header Content-Length: parked %q for a body of %s bytes", got, want)
			}
			for _, h := range []string{"Content-Type", "Access-Control-Allow-Origin", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods", "Access-Control-Expose-Headers"} {
				if got, want := resp.Header.Get(h), rec.Header().Get(h); got != want {
					t.Errorf("header %s: parked %q, handler %q", h, got, want)
				}
			}
		}
		bodies = append(bodies, body)
	}
	for i, b := range bodies {
		if !bytes.Equal(withoutAge(b), withoutAge(bodies[0])) {
			t.Fatalf("long-poll %d answered differently from the first", i)
		}
	}

	// The next request on a connection: parked again, answered at its
	// timeout with nothing new.
	next := testnode.Decode[struct {
		NextBatch string `json:"next_batch"`
	}](t, bodies[0]).NextBatch
	timedOut := url.Values{"since": {next}, "timeout": {"300"}, "filter": {noPresence}}
	start := time.Now()
	getOn(t, conns[0], "/_matrix/client/v3/sync?"+timedOut.Encode(), token)
	resp, body := readAnswer(t, readers[0])
	if took := time.Since(start); resp.StatusCode != http.StatusOK || took < 300*time.Millisecond {
		t.Fatalf("timed-out long-poll: %d after %v: %s", resp.StatusCode, took, body)
	}
	if bytes.Contains(body, []byte(`"join"`)) {
		t.Fatalf("timed-out long-poll has news: %s", body)
	}

	// Clients that go while parked.
	for _, conn := range conns {
		getOn(t, conn, "/_matrix/client/v3/sync?since="+url.QueryEscape(next)+"&timeout=30000", token)
	}
	waitFor(t, func() bool { return n.Sync.Waiting() == polls }, "long-polls waiting again")
	for _, conn := range conns {
		conn.Close()
	}
	waitFor(t, func() bool { return n.Sync.Waiting() == 0 }, "closed long-polls forgotten")
	waitFor(t, func() bool { return runtime.NumGoroutine() <= baseline+polls/4 }, "goroutines back to the baseline")
}

// TestParkedErrorAnswer: a parked long-poll whose build fails when woken
// is answered as the handler answers the same failure: status, body and
// the Retry-After of M_LIMIT_EXCEEDED.
func TestParkedErrorAnswer(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	alice := n.Register("alice")
	room := testnode.PublicRoom(t, alice)
	var failing atomic.Bool
	n.Sync.AddSource(sync.SourceFunc(func(context.Context, *sync.Request, *sync.Response) error {
		if failing.Load() {
			return fmt.Errorf("presence: %w", mxhttp.LimitExceeded("too many requests").With("retry_after_ms", int64(2500)))
		}
		return nil
	}))
	since := testnode.SyncOnce(t, alice, "", 0).NextBatch
	path := "/_matrix/client/v3/sync?" + url.Values{"since": {since}, "timeout": {"30000"}, "filter": {noPresence}}.Encode()

	conn, err := net.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	getOn(t, conn, path, alice.AccessToken)
	waitFor(t, func() bool { return n.Sync.Waiting() == 1 }, "the long-poll waiting")
	failing.Store(true)
	if _, err := alice.SendText(t.Context(), room, "wake up"); err != nil {
		t.Fatal(err)
	}
	resp, body := readAnswer(t, bufio.NewReader(conn))

	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
	rec := httptest.NewRecorder()
	n.Handler().ServeHTTP(rec, req)
	if resp.StatusCode != http.StatusTooManyRequests || resp.StatusCode != rec.Code || !bytes.Equal(body, rec.Body.Bytes()) {
		t.Fatalf("parked answer %d %s, the handler's %d %s", resp.StatusCode, body, rec.Code, rec.Body)
	}
	for _, h := range []string{"Retry-After", "Content-Type", "Access-Control-Allow-Origin"} {
		if got, want := resp.Header.Get(h), rec.Header().Get(h); got != want || want == "" {
			t.Errorf("header %s: parked %q, handler %q", h, got, want)
		}
	}
}

// withoutAge blanks the events' unsigned.age, which is the time since
// the event was sent when the answer was built.
func withoutAge(b []byte) []byte {
	return ageField.ReplaceAll(b, []byte(`"age":0`))
}

var ageField = regexp.MustCompile(`"age":[0-9]+`)

func getOn(t testing.TB, conn net.Conn, path, token string) {
	t.Helper()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, token); err != nil {
		t.Fatal(err)
	}
}

func readAnswer(t *testing.T, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
