// Package cputime reads the CPU time the process has used, so that
// benchmarks can report CPU time per operation beside wall time: on a
// shared machine the wall time of an operation grows with the load, its
// CPU time much less.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Process returns the user and system CPU time the process has used so
// far, every goroutine (the garbage collector's too) counted.
func Process() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// Meter measures the process's CPU time from its start.
type Meter struct{ start time.Duration }

// Start starts a Meter.
func Start() Meter { return Meter{start: Process()} }

// Elapsed returns the CPU time used since the Meter started.
func (m Meter) Elapsed() time.Duration { return Process() - m.start }

// Report reports the CPU time used since the Meter started, divided by
// ops, as the benchmark's cpu-ms/op.
func (m Meter) Report(b *testing.B, ops int) {
	if ops > 0 {
		b.ReportMetric(float64(m.Elapsed())/float64(time.Millisecond)/float64(ops), "cpu-ms/op")
	}
}
