package appservice

import "github.com/prometheus/client_golang/prometheus"

// queueMetrics are the delivery queue's per-appservice metrics. Their
// label is the appservice's id, so the label space is bounded by the
// registrations.
type queueMetrics struct {
	depth       *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	failures    *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	skipped     *prometheus.CounterVec
}

func newQueueMetrics() *queueMetrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "matrixos", Subsystem: "appservice", Name: name, Help: help}
	}
	return &queueMetrics{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("queue_depth",
			"Items queued for an appservice, its unacknowledged transaction's included.")), []string{"appservice"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("last_success_timestamp_seconds",
			"When an appservice last accepted a transaction (0 if never).")), []string{"appservice"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts(opts("transaction_failures_total",
			"Transactions an appservice did not accept (each try counts).")), []string{"appservice"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("dropped_total",
			"Items not queued for an appservice because its queue was full, by kind.")), []string{"appservice", "kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts(opts("skipped_total",
			"Queued items that could not be read and were left out of an appservice's transactions, by kind.")), []string{"appservice", "kind"}),
	}
}

// observe sets t's gauges; the queue's mutex is held.
func (m *queueMetrics) observe(t *target) {
	m.depth.WithLabelValues(t.id).Set(float64(t.depth))
	last := 0.0
	if !t.lastSuccess.IsZero() {
		last = float64(t.lastSuccess.UnixMilli()) / 1000
	}
	m.lastSuccess.WithLabelValues(t.id).Set(last)
}

// Collectors are the queue's metrics, for the node's registry.
func (q *Queue) Collectors() []prometheus.Collector {
	return []prometheus.Collector{q.metrics.depth, q.metrics.lastSuccess, q.metrics.failures, q.metrics.dropped, q.metrics.skipped}
}
