package federation

import (
	"github.com/prometheus/client_golang/prometheus"
)

// outboxMetrics are the outbox's per-destination gauges. Their label is
// the destination, and only destinations the outbox has queued for get
// one, so the label space is bounded by the servers this node shares
// rooms with.
type outboxMetrics struct {
	depth       *prometheus.GaugeVec
	backoff     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	// droppedEDUs counts the EDUs dropped from queues, by class
	// (ephemeral, durable): past a queue's bound, or refused for good.
	droppedEDUs *prometheus.CounterVec
}

func newOutboxMetrics() *outboxMetrics {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "matrixos", Subsystem: "federation", Name: name, Help: help,
		}, []string{"destination"})
	}
	return &outboxMetrics{
		depth:       gauge("queue_depth", "PDUs and EDUs queued for a destination."),
		backoff:     gauge("backoff_seconds", "How long a destination's next try waits after its last failure (0 when it is not failing)."),
		lastSuccess: gauge("last_success_timestamp_seconds", "When a destination last accepted a transaction (0 if never)."),
		droppedEDUs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "matrixos", Subsystem: "federation", Name: "dropped_edus_total",
			Help: "EDUs dropped from the outbound queue: past a destination's bound, or refused by it for good.",
		}, []string{"class"}),
	}
}

// observe sets d's gauges; the outbox's mutex is held.
func (m *outboxMetrics) observe(d *destination) {
	m.depth.WithLabelValues(d.name).Set(float64(d.depth()))
	backoff := 0.0
	if !d.retryAt.IsZero() && !d.failedAt.IsZero() {
		backoff = d.retryAt.Sub(d.failedAt).Seconds()
	}
	m.backoff.WithLabelValues(d.name).Set(backoff)
	last := 0.0
	if !d.lastSuccess.IsZero() {
		last = float64(d.lastSuccess.UnixMilli()) / 1000
	}
	m.lastSuccess.WithLabelValues(d.name).Set(last)
}

// Collectors are the outbox's metrics, for the node's registry.
func (o *Outbox) Collectors() []prometheus.Collector {
	return []prometheus.Collector{o.metrics.depth, o.metrics.backoff, o.metrics.lastSuccess, o.metrics.droppedEDUs}
}
