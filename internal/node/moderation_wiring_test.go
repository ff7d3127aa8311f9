package node

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/config"
)

// TestFailedNewLeavesNoModerationFollower: a New that fails after the
// moderation service is made (here federation.New, for a missing CA
// file) leaves no moderation follower running.
func TestFailedNewLeavesNoModerationFollower(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.ServerName = "localhost"
	cfg.LogLevel = "warn"
	cfg.Federation = true
	cfg.FederationCA = filepath.Join(t.TempDir(), "missing-ca.pem")
	if _, err := New(context.Background(), cfg, NewLogger(cfg, io.Discard)); err == nil {
		t.Fatal("New with a missing federation CA file succeeded")
	}
	buf := make([]byte, 1<<22)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "moderation.(*Service).follow") {
		t.Fatal("a failed New left the moderation follower running")
	}
}
