// Package dendriteconf writes the configuration and signing key that
// Matrix OS's tests and load tool give Dendrite, the second Matrix
// implementation they run beside Matrix OS (interop peer and side-by-side
// benchmark). It owns no state; both users call it on a fresh directory.
package dendriteconf

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Options chooses what differs between the two uses.
type Options struct {
	// ServerName is Dendrite's server name.
	ServerName string
	// Federation turns federation (and presence) on: the interop tests
	// federate; the benchmark does not.
	Federation bool
	// Search turns Dendrite's search index on (the benchmark keeps one, as
	// Matrix OS does).
	Search bool
	// LogLevel is Dendrite's log level: "info", "warn", ...
	LogLevel string
}

// KeyFile and ConfigFile are the names Write gives its files in the
// directory; Dendrite runs with that directory as its working directory
// and `-config ConfigFile`.
const (
	KeyFile    = "matrix_key.pem"
	ConfigFile = "dendrite.yaml"
)

// Write writes Dendrite's signing key (keyName, e.g. "dendrite", as the
// key ID ed25519:keyName) and its configuration into dir, both 0600. The
// configuration keeps everything in dir: SQLite (one database per
// component: Dendrite's global database is PostgreSQL only), JetStream in
// memory, no notary, no rate limits and cheap password hashing
// (registration is never what is measured). It returns the public key.
func Write(dir, keyName string, opts Options) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block := &pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": "ed25519:" + keyName}, Bytes: priv.Seed()}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("dendrite key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(YAML(opts)), 0o600); err != nil {
		return nil, fmt.Errorf("dendrite config: %w", err)
	}
	return pub, nil
}

// YAML is Dendrite's configuration for opts (see Write).
func YAML(opts Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 2
global:
  server_name: %q
  private_key: %s
  key_validity_period: 168h0m0s
  cache:
    max_size_estimated: 64mb
    max_age: 1h
  trusted_third_party_id_servers: []
  disable_federation: %t
  presence:
    enable_inbound: %t
    enable_outbound: %t
  report_stats:
    enabled: false
  jetstream:
    in_memory: true
    storage_path: ./
    topic_prefix: Dendrite
  dns_cache:
    enabled: false
federation_api:
  database: {connection_string: "file:federationapi.db"}
  send_max_retries: 16
  disable_tls_validation: false
  key_perspectives: []
  prefer_direct_fetch: true
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
    enabled: %t
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
    level: %s
`, opts.ServerName, KeyFile, !opts.Federation, opts.Federation, opts.Federation, opts.Search, opts.LogLevel)
	return b.String()
}
