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

// instrument counts requests per route pattern (not per raw path, which
// would explode the label space).
// It also logs each request at debug level.
func instrument(log *slog.Logger, mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		if sw.hijacked {
			// Parked: its answer comes later, off the handler, and is not
			// counted here.
			return
		}
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		httpRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		took := time.Since(start)
		httpDuration.WithLabelValues(route).Observe(took.Seconds())
		if log.Enabled(r.Context(), slog.LevelDebug) || sw.code >= 500 {
			level := slog.LevelDebug
			if sw.code >= 500 {
				level = slog.LevelWarn
			}
			log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", sw.code, "took", took)
		}
	})
}
