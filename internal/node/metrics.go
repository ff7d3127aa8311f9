package node

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

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

	// What record needs once a parked request's answer comes.
	log   *slog.Logger
	mux   *http.ServeMux
	r     *http.Request
	start time.Time
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

// ParkedFinished records a parked request once its answer is written
// (httppark.Finisher); one whose client went before is recorded as
// mxhttp records a request whose client went (499).
func (w *statusWriter) ParkedFinished(status int) {
	if status == 0 {
		status = 499
	}
	w.record(status)
}

// record counts the request and its duration, and logs it.
func (w *statusWriter) record(code int) {
	_, route := w.mux.Handler(w.r)
	if route == "" {
		route = "unmatched"
	}
	httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	took := time.Since(w.start)
	httpDuration.WithLabelValues(route).Observe(took.Seconds())
	if w.log.Enabled(w.r.Context(), slog.LevelDebug) || code >= 500 {
		level := slog.LevelDebug
		if code >= 500 {
			level = slog.LevelWarn
		}
		w.log.Log(w.r.Context(), level, "request", "method", w.r.Method, "path", w.r.URL.Path, "status", code, "took", took)
	}
}

// instrument counts requests per route pattern (not per raw path, which
// would explode the label space), parked ones once answered.
// It also logs each request at debug level.
func instrument(log *slog.Logger, mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK, log: log, mux: mux, r: r, start: time.Now()}
		next.ServeHTTP(sw, r)
		if sw.hijacked {
			// Parked: counted by ParkedFinished once answered.
			return
		}
		sw.record(sw.code)
	})
}
