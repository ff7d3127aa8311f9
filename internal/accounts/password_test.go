package accounts

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHashSlotCount(t *testing.T) {
	const hash = argonMemory * 1024
	for _, tc := range []struct {
		name   string
		budget int64
		procs  int
		want   int
	}{
		{"unknown memory", 0, 8, 2},
		{"unknown memory, one core", 0, 1, 1},
		{"plenty of memory", 64 * hash, 4, 4},
		{"memory for three", 3*hash + hash/2, 16, 3},
		{"less than one hash", hash / 2, 4, 1},
		{"raspberry pi: 1 GiB / 16", 1 << 26, 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hashSlotCount(tc.budget, tc.procs); got != tc.want {
				t.Errorf("hashSlotCount(%d, %d) = %d, want %d", tc.budget, tc.procs, got, tc.want)
			}
		})
	}
}

// forcedCollections reads how many garbage collections were forced
// (runtime.GC, debug.FreeOSMemory) since the process started.
func forcedCollections() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestPasswordCheckForcesNoCollection checks that logins one after another
// do not each force a full garbage collection (which marks the node's
// whole heap and cost more CPU than the hash) before or after their hash.
func TestPasswordCheckForcesNoCollection(t *testing.T) {
	hash, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	const logins = 6
	before := forcedCollections()
	for range logins {
		ok, err := CheckPassword(hash, "correct horse")
		if err != nil || !ok {
			t.Fatalf("CheckPassword = %v, %v; want true", ok, err)
		}
	}
	// The hand-back after an idle burst may fire once if the logins were
	// slowed past freeIdle by a loaded machine; one forced collection per
	// login (or two, before and after) is what must not happen.
	if forced := forcedCollections() - before; forced > 1 {
		t.Errorf("%d logins forced %d garbage collections, want at most 1", logins, forced)
	}
}

// TestHashMemoryBounded runs more concurrent password checks than there
// are hash slots: no more than the slots run at once, and the heap stays
// within three times the slots' hash memory above what it held before (the
// collector's pacing lets dead hashes grow to about as much as the live
// ones before a cycle, and hashes go on allocating while it marks).
func TestHashMemoryBounded(t *testing.T) {
	hash, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc

	var peakRunning, peakHeap atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			peakHeap.Store(max(peakHeap.Load(), int64(s[0].Value.Uint64())))
			peakRunning.Store(max(peakRunning.Load(), int64(hashesRunning.Load())))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 4*cap(hashSlots))
	for range 4 * cap(hashSlots) {
		wg.Go(func() {
			if _, err := CheckPassword(hash, "pw"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := peakRunning.Load(); got < 1 || got > int64(cap(hashSlots)) {
		t.Errorf("peak concurrent hashes = %d, want 1 to %d (the slots)", got, cap(hashSlots))
	}
	slotsMemory := int64(cap(hashSlots)) * argonMemory * 1024
	if limit := 2*int64(base) + 3*slotsMemory + 16<<20; peakHeap.Load() > limit {
		t.Errorf("peak heap %d MiB, want at most %d MiB (base %d MiB, %d slots)",
			peakHeap.Load()>>20, limit>>20, base>>20, cap(hashSlots))
	}
}
