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
	commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "matrixos", Subsystem: "db", Name: "commit_seconds",
		Help:    "Time of one batched write transaction's COMMIT: writing its pages to the log and syncing it.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	checkpointSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "matrixos", Subsystem: "db", Name: "wal_checkpoint_seconds",
		Help:    "Time of one WAL checkpoint pass (SQLite): copying the log's pages into the database file and syncing it.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
)

// Collectors returns the package's Prometheus collectors.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{writeBatchSize, writeBatchSeconds, commitSeconds, checkpointSeconds}
}
