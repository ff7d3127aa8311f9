package httppark_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/httppark"
)

// parkServer serves /park (parked until release is called, then answered
// with the request's query) and /plain (answered at once) on a Listener.
type parkServer struct {
	addr     string
	gone     chan struct{} // one value per parked request whose client went
	finished chan int      // the status of each parked request once over

	mu     sync.Mutex
	parked []*httppark.Conn
	bodies []string
}

func startParkServer(t *testing.T) *parkServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps := &parkServer{addr: ln.Addr().String(), gone: make(chan struct{}, 100), finished: make(chan int, 100)}
	pl := httppark.NewListener(ln, time.Minute)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.serve(wrapWriter{&finishWriter{w, ps.finished}}, r)
	})
	srv := &http.Server{Handler: handler, BaseContext: pl.BaseContext}
	go srv.Serve(pl)
	t.Cleanup(func() { srv.Close() })
	return ps
}

func (ps *parkServer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Set-Before", "yes")
	body := `{"q":"` + r.URL.RawQuery + `"}`
	if r.URL.Path == "/park" {
		c, ok := httppark.Park(w, r, func() { ps.gone <- struct{}{} })
		if ok {
			ps.mu.Lock()
			ps.parked = append(ps.parked, c)
			ps.bodies = append(ps.bodies, body)
			ps.mu.Unlock()
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, body)
}

// finishWriter is a middleware's ResponseWriter that is told the
// status of each parked request once it is over.
type finishWriter struct {
	http.ResponseWriter
	finished chan<- int
}

func (w *finishWriter) ParkedFinisher() func(status int) {
	finished := w.finished
	return func(status int) { finished <- status }
}

func (w *finishWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrapWriter is another middleware's, in front of finishWriter.
type wrapWriter struct{ http.ResponseWriter }

func (w wrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// dial opens a connection to the server, closed at the end of the test.
func (ps *parkServer) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", ps.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// finish is the status of the next parked request that is over.
func (ps *parkServer) finish(t *testing.T) int {
	t.Helper()
	select {
	case status := <-ps.finished:
		return status
	case <-time.After(10 * time.Second):
		t.Fatal("a parked request was over and its Finisher not told")
		return 0
	}
}

// waitParked waits until n requests are parked.
func (ps *parkServer) waitParked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps.mu.Lock()
		got := len(ps.parked)
		ps.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests parked, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// take waits for one parked request and takes it off the server's list,
// unanswered.
func (ps *parkServer) take(t *testing.T) *httppark.Conn {
	t.Helper()
	ps.waitParked(t, 1)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.parked[0]
	ps.parked, ps.bodies = nil, nil
	return c
}

// release answers every parked request.
func (ps *parkServer) release(t *testing.T) {
	t.Helper()
	ps.mu.Lock()
	parked, bodies := ps.parked, ps.bodies
	ps.parked, ps.bodies = nil, nil
	ps.mu.Unlock()
	for i, c := range parked {
		if err := c.Answer(http.StatusOK, http.Header{"Content-Type": {"application/json"}}, []byte(bodies[i])); err != nil {
			t.Errorf("answer: %v", err)
		}
	}
}

// TestParkedKeepAlive sends several parked requests, and plain ones
// between them, over one connection: each parked answer carries the
// handler's headers and its body, and the connection serves the next
// request after it.
func TestParkedKeepAlive(t *testing.T) {
	ps := startParkServer(t)
	conn := ps.dial(t)
	br := bufio.NewReader(conn)
	for i := range 5 {
		fmt.Fprintf(conn, "GET /park?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		ps.waitParked(t, 1)
		ps.release(t)
		resp := readResponse(t, br)
		if want := fmt.Sprintf(`{"q":"n=%d"}`, i); resp.body != want || resp.StatusCode != 200 {
			t.Fatalf("parked answer %d: %d %q, want 200 %q", i, resp.StatusCode, resp.body, want)
		}
		if resp.Header.Get("X-Set-Before") != "yes" || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Date") == "" {
			t.Fatalf("parked answer %d: headers %v", i, resp.Header)
		}
		if resp.Close {
			t.Fatalf("parked answer %d closes the connection", i)
		}
		fmt.Fprintf(conn, "GET /plain?m=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if resp := readResponse(t, br); resp.body != fmt.Sprintf(`{"q":"m=%d"}`, i) {
			t.Fatalf("plain answer %d after a parked one: %q", i, resp.body)
		}
	}
}

// TestAnswerHeader: an answer's header fields are added to those the
// handler had set when it parked, replacing those of the same name.
func TestAnswerHeader(t *testing.T) {
	ps := startParkServer(t)
	conn := ps.dial(t)
	io.WriteString(conn, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
	c := ps.take(t)
	if err := c.Answer(http.StatusTooManyRequests, http.Header{"X-Set-Before": {"replaced"}, "Retry-After": {"3"}}, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	resp := readResponse(t, bufio.NewReader(conn))
	if got := resp.Header.Values("X-Set-Before"); len(got) != 1 || got[0] != "replaced" {
		t.Errorf("X-Set-Before: %q, want only the answer's", got)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" || resp.Header.Get("Date") == "" || resp.body != "{}" {
		t.Errorf("answer: %d %v %q", resp.StatusCode, resp.Header, resp.body)
	}
}

// TestParkedPipelined sends the next request before the parked one is
// answered: it is answered after it, on the same connection.
func TestParkedPipelined(t *testing.T) {
	ps := startParkServer(t)
	conn := ps.dial(t)
	io.WriteString(conn, "GET /park?a HTTP/1.1\r\nHost: x\r\n\r\nGET /plain?b HTTP/1.1\r\nHost: x\r\n\r\n")
	ps.waitParked(t, 1)
	ps.release(t)
	br := bufio.NewReader(conn)
	for _, want := range []string{`{"q":"a"}`, `{"q":"b"}`} {
		if resp := readResponse(t, br); resp.body != want {
			t.Fatalf("answer %q, want %q", resp.body, want)
		}
	}
}

// TestParkedPipelinedClientGoes: a client that sends its next request
// while parked (before and after the parking), then closes, is still
// noticed going.
func TestParkedPipelinedClientGoes(t *testing.T) {
	ps := startParkServer(t)
	for _, early := range []bool{true, false} {
		conn := ps.dial(t)
		next := "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"
		first := "GET /park HTTP/1.1\r\nHost: x\r\n\r\n"
		if early {
			first += next
		}
		io.WriteString(conn, first)
		ps.take(t)
		if !early {
			io.WriteString(conn, next)
			time.Sleep(50 * time.Millisecond) // let the watcher see the bytes
		}
		conn.Close()
		select {
		case <-ps.gone:
		case <-time.After(10 * time.Second):
			t.Fatalf("pipelined (early %v): the parked request was not told its client went", early)
		}
		if status := ps.finish(t); status != 0 {
			t.Fatalf("a parked request whose client went finished with status %d, want 0", status)
		}
	}
}

// TestIdleHalfClose: a client whose connection idles after a parked
// answer sends its next request and at once half-closes (shut down its
// writing side): the request is served, as net/http serves it.
func TestIdleHalfClose(t *testing.T) {
	ps := startParkServer(t)
	for i := range 10 {
		conn := ps.dial(t)
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
		ps.waitParked(t, 1)
		ps.release(t)
		readResponse(t, br)
		time.Sleep(20 * time.Millisecond) // let the connection idle, watched
		fmt.Fprintf(conn, "GET /plain?half=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("half-closed %d: the request after the parked answer was not served: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf(`{"q":"half=%d"}`, i); string(body) != want {
			t.Fatalf("half-closed %d: answer %q, want %q", i, body, want)
		}
	}
}

// TestParkedFinished: a Finisher behind the server's ResponseWriter is
// told each parked request's status once answered, and nothing of the
// requests answered at once.
func TestParkedFinished(t *testing.T) {
	ps := startParkServer(t)
	conn := ps.dial(t)
	br := bufio.NewReader(conn)
	for _, status := range []int{http.StatusOK, http.StatusTooManyRequests} {
		io.WriteString(conn, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
		readResponse(t, br)
		io.WriteString(conn, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
		c := ps.take(t)
		if err := c.Answer(status, nil, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if resp := readResponse(t, br); resp.StatusCode != status {
			t.Fatalf("answered %d, want %d", resp.StatusCode, status)
		}
		if got := ps.finish(t); got != status {
			t.Fatalf("finished with %d, want %d", got, status)
		}
	}
	select {
	case got := <-ps.finished:
		t.Fatalf("finished once more, with %d", got)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestParkedClientGoes closes parked connections from the client side:
// each parked request is told, and the server's goroutines and open
// descriptors return to what they were before.
func TestParkedClientGoes(t *testing.T) {
	ps := startParkServer(t)
	// One request first, so that the server's own goroutines run.
	warm, err := http.Get("http://" + ps.addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	warm.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	goroutines, fds := settle(t, -1, -1)

	const n = 50
	var conns []net.Conn
	for i := range n {
		conn, err := net.Dial("tcp", ps.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "GET /park?%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	ps.waitParked(t, n)
	if g := runtime.NumGoroutine(); g > goroutines+5 {
		t.Errorf("%d goroutines with %d requests parked, %d before", g, n, goroutines)
	}
	for _, c := range conns {
		c.Close()
	}
	for range n {
		select {
		case <-ps.gone:
		case <-time.After(10 * time.Second):
			t.Fatal("a parked request was not told its client went")
		}
	}
	for _, c := range ps.parked {
		if err := c.Answer(200, nil, []byte("{}")); err == nil {
			t.Fatal("answered a request whose client went")
		}
	}
	settle(t, goroutines, fds)
}

// settle waits until the goroutine and open descriptor counts are at
// most the given ones (any, when -1) and returns them.
func settle(t *testing.T, goroutines, fds int) (int, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if (goroutines < 0 || g <= goroutines) && (fds < 0 || f <= fds) {
			return g, f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines and %d open descriptors, want at most %d and %d", g, f, goroutines, fds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(entries)
}

type response struct {
	*http.Response
	body string
}

func readResponse(t *testing.T, br *bufio.Reader) response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return response{resp, b.String()}
}

// TestAnswerDoesNotWaitForASlowReader: an answer larger than the
// socket's buffers, to a client that reads nothing yet, returns at once
// (the few goroutines answering parked long-polls are not held by one
// client) and still reaches the client whole once it reads, on a
// connection that then serves its next request.
func TestAnswerDoesNotWaitForASlowReader(t *testing.T) {
	ps := startParkServer(t)
	conn := ps.dial(t)
	fmt.Fprintf(conn, "GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
	c := ps.take(t)
	body := []byte(strings.Repeat("x", 32<<20))
	start := time.Now()
	if err := c.Answer(http.StatusOK, nil, body); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Answer took %v with a client that does not read", took)
	}
	br := bufio.NewReader(conn)
	if resp := readResponse(t, br); len(resp.body) != len(body) {
		t.Fatalf("the client read %d bytes of the answer, want %d", len(resp.body), len(body))
	}
	fmt.Fprintf(conn, "GET /plain?after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := readResponse(t, br); resp.body != `{"q":"after"}` {
		t.Fatalf("next request on the connection: %q", resp.body)
	}
}
