package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// dendriteConfig is the configuration the tool gives Dendrite: plain HTTP
// on loopback, SQLite (one database per component), JetStream in memory,
// no federation, no rate limits, open registration with cheap password
// hashing (registration is not measured), and the search index on, as
// Matrix OS keeps one.
const dendriteConfig = `version: 2
global:
  server_name: localhost
  private_key: matrix_key.pem
  disable_federation: true
  trusted_third_party_id_servers: []
  cache:
    max_size_estimated: 64mb
    max_age: 1h
  presence:
    enable_inbound: false
    enable_outbound: false
  report_stats:
    enabled: false
  jetstream:
    in_memory: true
    storage_path: ./
    topic_prefix: Dendrite
federation_api:
  database: {connection_string: "file:federationapi.db"}
key_server:
  database: {connection_string: "file:keyserver.db"}
media_api:
  database: {connection_string: "file:mediaapi.db"}
  base_path: ./media_store
mscs:
  database: {connection_string: "file:mscs.db"}
relay_api:
  database: {connection_string: "file:relayapi.db"}
room_server:
  database: {connection_string: "file:roomserver.db"}
sync_api:
  database: {connection_string: "file:syncapi.db"}
  search:
    enabled: true
    index_path: ./searchindex
user_api:
  account_database: {connection_string: "file:userapi_accounts.db"}
  bcrypt_cost: 4
client_api:
  registration_disabled: false
  guests_disabled: true
  rate_limiting:
    enabled: false
logging:
  - type: std
    level: warn
`

// spawnDendrite starts the Dendrite binary on a fresh directory with
// dendriteConfig and waits for its first /versions answer.
func spawnDendrite(ctx context.Context, binary string) (*spawned, error) {
	dir, err := os.MkdirTemp("", "matrixos-bench-dendrite-")
	if err != nil {
		return nil, err
	}
	if err := writeDendriteFiles(dir); err != nil {
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
	cmd := exec.Command(binary, "-config", "dendrite.yaml", "-http-bind-address", addr, "-really-enable-open-registration")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return startAndWait(ctx, cmd, dir, "http://"+addr, 120*time.Second)
}

// writeDendriteFiles writes Dendrite's configuration and a signing key
// (an ed25519 seed in a MATRIX PRIVATE KEY block) into dir.
func writeDendriteFiles(dir string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block := &pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": "ed25519:bench"}, Bytes: priv.Seed()}
	if err := os.WriteFile(filepath.Join(dir, "matrix_key.pem"), pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "dendrite.yaml"), []byte(dendriteConfig), 0o600)
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
