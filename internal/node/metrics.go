package node

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "matrixos", Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "matrixos", Subsystem: "http", Name: "request_seconds",
		Help:    "HTTP request duration by route pattern (long-polls included).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"route"})
)

type statusWriter struct {
	http.ResponseWriter
	code     int
	hijacked bool // the handler took the connection (a parked /sync)
	rec      requestRecord
}

// requestRecord is what counting and logging a request needs once it is
// over: for a parked request it is all that is held while it waits (not
// the request or the server's ResponseWriter, which keep the connection's
// buffers alive).
type requestRecord struct {
	log          *slog.Logger
	route        string
	method, path string
	start        time.Time
}

func newRequestRecord(log *slog.Logger, mux *http.ServeMux, r *http.Request, start time.Time) requestRecord {
	_, route := mux.Handler(r)
	if route == "" {
		route = "unmatched"
	}
	return requestRecord{log: log, route: route, method: r.Method, path: r.URL.Path, start: start}
}

// Hijack lets a handler take the connection through the writer, and
// notes that it did.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.hijacked = err == nil
	return conn, brw, err
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ParkedFinisher (httppark.Finisher) records a parked request once its
// answer is written; one whose client went before is recorded as mxhttp
// records a request whose client went (499).
func (w *statusWriter) ParkedFinisher() func(status int) {
	rec := w.rec
	// The method and path are parts of the request's line (query
	// included), which they would keep; the parked requests' few methods
	// and paths are kept once.
	rec.method, rec.path = unique.Make(rec.method).Value(), unique.Make(rec.path).Value()
	return func(status int) {
		if status == 0 {
			status = 499
		}
		rec.record(context.Background(), status)
	}
}

// record counts the request and its duration, and logs it.
func (rec requestRecord) record(ctx context.Context, code int) {
	httpRequests.WithLabelValues(rec.route, strconv.Itoa(code)).Inc()
	took := time.Since(rec.start)
	httpDuration.WithLabelValues(rec.route).Observe(took.Seconds())
	if rec.log.Enabled(ctx, slog.LevelDebug) || code >= 500 {
		level := slog.LevelDebug
		if code >= 500 {
			level = slog.LevelWarn
		}
		rec.log.Log(ctx, level, "request", "method", rec.method, "path", rec.path, "status", code, "took", took)
	}
}

// instrument counts requests per route pattern (not per raw path, which
// would explode the label space), parked ones once answered.
// It also logs each request at debug level.
func instrument(log *slog.Logger, mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK, rec: newRequestRecord(log, mux, r, time.Now())}
		next.ServeHTTP(sw, r)
		if sw.hijacked {
			// Parked: counted by ParkedFinisher's function once answered.
			return
		}
		sw.rec.record(r.Context(), sw.code)
	})
}
