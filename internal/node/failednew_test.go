package node

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/matrixos/matrixos/internal/config"
)

// TestFailedNewLeavesNoGoroutines: a New that fails late (here
// federation.New, for a missing CA file, after every follower is made)
// leaves no goroutine of its own running: the count of goroutines comes
// back to what it was before New.
func TestFailedNewLeavesNoGoroutines(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.ServerName = "localhost"
	cfg.LogLevel = "warn"
	cfg.LedgerKeys = true
	cfg.Federation = true
	cfg.FederationCA = filepath.Join(t.TempDir(), "missing-ca.pem")
	before := runtime.NumGoroutine()
	if _, err := New(context.Background(), cfg, NewLogger(cfg, io.Discard)); err == nil {
		t.Fatal("New with a missing federation CA file succeeded")
	}
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		buf := make([]byte, 1<<22)
		t.Fatalf("a failed New left %d goroutines running (%d before, %d after):\n%s",
			after-before, before, after, buf[:runtime.Stack(buf, true)])
	}
}
