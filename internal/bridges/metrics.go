package bridges

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridges' metrics, labelled by bridge name (bounded by
// the bridges enabled).
type metrics struct {
	up       *prometheus.GaugeVec
	restarts *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "matrixos", Subsystem: "bridge", Name: "up",
			Help: "1 while a bridge is running and connected to the node, else 0."}, []string{"bridge"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "matrixos", Subsystem: "bridge", Name: "restarts_total",
			Help: "Times a bridge failed or exited and was started again."}, []string{"bridge"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.restarts}
}

// splitLines splits text into lines without their newlines.
func splitLines(text string) []string {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}
