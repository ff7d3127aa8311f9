package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// spawned is a node the tool started itself.
type spawned struct {
	cmd     *exec.Cmd
	dir     string
	URL     string
	PID     int
	Startup time.Duration
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// spawnNode starts `binary serve` on a fresh data directory on loopback
// with open registration, and measures the time from starting the process
// to its first successful /_matrix/client/versions answer.
func spawnNode(ctx context.Context, binary, sharedSecret string, extra []string) (*spawned, error) {
	dir, err := os.MkdirTemp("", "matrixos-bench-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"serve", "--data", dir, "--listen", addr, "--server-name", "localhost",
		"--open-registration", "--log-level", "warn", "--rate-limit=false"}
	if sharedSecret != "" {
		args = append(args, "--registration-shared-secret", sharedSecret)
	}
	args = append(args, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return startAndWait(ctx, cmd, dir, "http://"+addr, 60*time.Second)
}

// stop ends the node (SIGTERM, then SIGKILL) and removes its data.
func (s *spawned) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		for i := 0; i < 100; i++ {
			if s.cmd.Process.Signal(syscall.Signal(0)) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.cmd.Process.Kill()
	}
	os.RemoveAll(s.dir)
}
