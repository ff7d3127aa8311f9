package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/matrixos/matrixos/internal/dendriteconf"
)

// spawnDendrite starts the Dendrite binary on a fresh directory with
// dendriteConfig and waits for its first /versions answer.
func spawnDendrite(ctx context.Context, binary string) (*spawned, error) {
	dir, err := os.MkdirTemp("", "matrixos-bench-dendrite-")
	if err != nil {
		return nil, err
	}
	// Plain HTTP on loopback, no federation, and the search index on, as
	// Matrix OS keeps one.
	opts := dendriteconf.Options{ServerName: "localhost", Search: true, LogLevel: "warn"}
	if _, err := dendriteconf.Write(dir, "bench", opts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log, err := os.Create(filepath.Join(dir, "dendrite.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.Command(binary, "-config", dendriteconf.ConfigFile, "-http-bind-address", addr, "-really-enable-open-registration")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return startAndWait(ctx, cmd, dir, "http://"+addr, 120*time.Second)
}

// startAndWait starts cmd, a server that keeps its data in dir, and
// measures the time to its first /_matrix/client/versions answer at url.
func startAndWait(ctx context.Context, cmd *exec.Cmd, dir, url string, timeout time.Duration) (*spawned, error) {
	s := &spawned{cmd: cmd, dir: dir, URL: url}
	hc := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s.PID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(timeout)
	for {
		if versions(ctx, hc, s.URL) == nil {
			s.Startup = time.Since(start)
			go func() { <-exited }()
			return s, nil
		}
		select {
		case err := <-exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%s exited during start-up: %v", cmd.Path, err)
		case <-deadline:
			s.stop()
			return nil, fmt.Errorf("%s did not answer /versions within %v", cmd.Path, timeout)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
