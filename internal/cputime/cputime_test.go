package cputime

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestMeterCountsWork burns CPU in a loop and checks that the meter saw
// about that much: more than nothing, no more than the wall time allows on
// the machine's cores.
func TestMeterCountsWork(t *testing.T) {
	meter := Start()
	began := time.Now()
	sum := [32]byte{}
	for time.Since(began) < 50*time.Millisecond {
		sum = sha256.Sum256(sum[:])
	}
	used := meter.Elapsed()
	if used <= 0 {
		t.Fatalf("CPU time used while hashing for 50 ms = %v, want more than 0", used)
	}
	if wall := time.Since(began); used > 64*wall {
		t.Fatalf("CPU time %v over a wall time of %v", used, wall)
	}
}
