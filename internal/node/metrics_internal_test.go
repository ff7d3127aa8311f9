package node

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/matrixos/matrixos/internal/httppark"
)

// TestParkedRequestsCounted: a parked request is counted in
// matrixos_http_requests_total and the duration histogram once it is
// answered (with its answer's status), or once its client went (499),
// as one answered on the handler's goroutine is.
func TestParkedRequestsCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("requests are parked on Linux only")
	}
	const route = "GET /test/parked"
	mux := http.NewServeMux()
	parked := make(chan *httppark.Conn, 1)
	mux.HandleFunc(route, func(w http.ResponseWriter, r *http.Request) {
		c, ok := httppark.Park(w, r, func() {})
		if !ok {
			http.Error(w, "not parked", http.StatusInternalServerError)
			return
		}
		parked <- c
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl := httppark.NewListener(ln, time.Minute)
	srv := &http.Server{Handler: instrument(slog.New(slog.DiscardHandler), mux, mux), BaseContext: pl.BaseContext}
	go srv.Serve(pl)
	t.Cleanup(func() { srv.Close() })

	count := func(code string) float64 { return testutil.ToFloat64(httpRequests.WithLabelValues(route, code)) }
	samples := func() uint64 {
		var m dto.Metric
		if err := httpDuration.WithLabelValues(route).(prometheus.Histogram).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	waitCounted := func(code string, want float64, wantSamples uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count(code) != want || samples() != wantSamples {
			if time.Now().After(deadline) {
				t.Fatalf("%s counted %v times with %d durations, want %v and %d", code, count(code), samples(), want, wantSamples)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ok0, gone0, samples0 := count("200"), count("499"), samples()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /test/parked HTTP/1.1\r\nHost: x\r\n\r\n")
	c := <-parked
	if got := count("200"); got != ok0 {
		t.Fatalf("a parked request was counted before its answer")
	}
	if err := c.Answer(http.StatusOK, nil, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitCounted("200", ok0+1, samples0+1)

	io.WriteString(conn, "GET /test/parked HTTP/1.1\r\nHost: x\r\n\r\n")
	<-parked
	conn.Close()
	waitCounted("499", gone0+1, samples0+2)
	if got := count("200"); got != ok0+1 {
		t.Fatalf("200 counted %v times, want %v", got, ok0+1)
	}
}
