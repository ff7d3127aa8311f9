package storage

import "github.com/prometheus/client_golang/prometheus"

var (
	writeBatchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "matrixos", Subsystem: "db", Name: "write_batch_size",
		Help:    "Writes committed together in one transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	writeBatchSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "matrixos", Subsystem: "db", Name: "write_batch_seconds",
		Help:    "Time to run and commit one batched write transaction.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
)

// Collectors returns the package's Prometheus collectors.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{writeBatchSize, writeBatchSeconds}
}
