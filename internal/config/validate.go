package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Validate checks every setting and reports each mistake, naming the
// setting and its flag, so the node refuses to start with a value that
// would break it or silently mean something else.
func (c *Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (--%s): %s", setting, FlagName(setting), fmt.Sprintf(format, args...)))
	}
	if err := ValidServerName(c.ServerName); err != nil {
		bad("server_name", "%v", err)
	}
	if err := validListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.MetricsListen != "" {
		if err := validListen(c.MetricsListen); err != nil {
			bad("metrics_listen", "%v", err)
		}
	}
	if c.PublicBaseURL != "" {
		if err := validBaseURL(c.PublicBaseURL); err != nil {
			bad("public_baseurl", "%v", err)
		}
	}
	if c.Database != "" {
		if _, _, err := storage.ParseDSN(c.Database); err != nil {
			bad("database", "%v", err)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "%q: want text or json", c.LogFormat)
	}
	switch c.Ledger {
	case "room", "all":
	default:
		bad("ledger", "%q: want room or all", c.Ledger)
	}
	if !rooms.IsSupported(id.RoomVersion(c.DefaultRoomVersion)) {
		bad("default_room_version", "%q is not a room version this node supports (%s)", c.DefaultRoomVersion, supportedVersions())
	}
	if !validLocalpart(c.ServerNoticesLocalpart) {
		bad("server_notices_localpart", "%q: want a user ID localpart of a-z, 0-9, ., _, =, -, / and +", c.ServerNoticesLocalpart)
	}
	if c.MaxUploadBytes <= 0 {
		bad("max_upload_bytes", "%d: want a positive number of bytes", c.MaxUploadBytes)
	}
	if c.MediaQuotaBytes < 0 {
		bad("media_quota_bytes", "%d: want 0 (no quota) or a positive number of bytes", c.MediaQuotaBytes)
	}
	if c.MaxEventDelay <= 0 {
		bad("max_event_delay", "%s: want a positive duration", c.MaxEventDelay)
	}
	if c.AccessTokenLifetime < 0 {
		bad("access_token_lifetime", "%s: want 0 (never expire) or a positive duration", c.AccessTokenLifetime)
	}
	for _, cidr := range c.AllowPrivateNetworks {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			bad("allow_private_networks", "%q is not a CIDR range such as 10.0.0.0/8", cidr)
		}
	}
	c.validateFederation(bad)
	c.validateAssistant(bad)
	for _, r := range []struct {
		name             string
		perMinute, burst int64
	}{
		{"login", c.RateLimitLoginPerMin, c.RateLimitLoginBurst},
		{"register", c.RateLimitRegPerMin, c.RateLimitRegBurst},
		{"send", c.RateLimitSendPerMin, c.RateLimitSendBurst},
		{"upload", c.RateLimitUploadPerMin, c.RateLimitUploadBurst},
	} {
		if r.perMinute < 0 {
			bad("rate_limit_"+r.name+"_per_minute", "%d: want 0 (unlimited) or a positive rate", r.perMinute)
		}
		if r.burst < 0 || (r.burst == 0 && r.perMinute > 0) {
			bad("rate_limit_"+r.name+"_burst", "%d: want at least 1", r.burst)
		}
	}
	return errors.Join(errs...)
}

// validateAssistant checks the assistant's model server settings.
func (c *Config) validateAssistant(bad func(setting, format string, args ...any)) {
	if c.AssistantModelURL == "" {
		return
	}
	if u, err := url.Parse(c.AssistantModelURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("assistant_model_url", "%q: want an http or https URL such as http://127.0.0.1:11434/v1", c.AssistantModelURL)
	}
	if c.AssistantModel == "" {
		bad("assistant_model", "empty: name the chat model to ask at assistant_model_url")
	}
	if c.AssistantModelTimeout <= 0 {
		bad("assistant_model_timeout", "%s: want a positive duration", c.AssistantModelTimeout)
	}
	if c.AssistantAPIKeyFile != "" {
		if _, err := os.Stat(c.AssistantAPIKeyFile); err != nil {
			bad("assistant_api_key_file", "%v", err)
		}
	}
}

func supportedVersions() string {
	s := make([]string, len(rooms.SupportedVersions))
	for i, v := range rooms.SupportedVersions {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// ValidServerName checks a server name against the grammar of the spec's
// appendix "Server name": a DNS name, an IPv4 address or a bracketed IPv6
// address, optionally followed by ':' and a port.
func ValidServerName(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > 255 {
		return errors.New("longer than 255 characters")
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("%q: IPv6 address without its closing ']'", s)
		}
		host, port = s[:end+1], s[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return fmt.Errorf("%q: want ':' and a port after the IPv6 address", s)
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i:]
	}
	if port != "" {
		if err := validPort(port[1:]); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	switch {
	case strings.HasPrefix(host, "["):
		addr, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return fmt.Errorf("%q: %s is not an IPv6 address", s, host)
		}
	case host == "":
		return fmt.Errorf("%q: no host name", s)
	default:
		for _, r := range host {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
				return fmt.Errorf("%q: a server name is a host name (letters, digits, '-' and '.'), an IPv4 address or [IPv6], with an optional :port", s)
			}
		}
		if looksLikeIPv4(host) {
			if _, err := netip.ParseAddr(host); err != nil {
				return fmt.Errorf("%q: %s is not an IPv4 address", s, host)
			}
		}
	}
	return nil
}

// looksLikeIPv4 reports whether host is four dot-separated groups of
// digits, the IPv4 form of the grammar.
func looksLikeIPv4(host string) bool {
	parts := strings.Split(host, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

func validPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || strings.Trim(p, "0123456789") != "" || len(p) > 5 || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", p)
	}
	return nil
}

// validListen checks a host:port listen address (the port may be 0: any).
func validListen(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port, such as 127.0.0.1:8008", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// validBaseURL checks public_baseurl: an absolute http or https URL.
func validBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL, such as https://matrix.example.org", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: want a URL without user, query or fragment", s)
	}
	return nil
}

// validateFederation checks the federation settings: the listener, the TLS
// files (both or neither, and loadable), the extra CA and the notaries.
func (c *Config) validateFederation(bad func(setting, format string, args ...any)) {
	if err := validListen(c.FederationListen); err != nil {
		bad("federation_listen", "%v", err)
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		if c.TLSCert != "" {
			bad("tls_cert", "set without tls_key: give both files or neither")
		} else {
			bad("tls_key", "set without tls_cert: give both files or neither")
		}
	case c.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			bad("tls_cert", "cannot load %s with key %s: %v", c.TLSCert, c.TLSKey, err)
		}
	}
	if c.FederationCA != "" {
		if _, err := LoadCertPool(c.FederationCA); err != nil {
			bad("federation_ca", "%v", err)
		}
	}
	for _, name := range c.TrustedKeyServers {
		if err := ValidServerName(name); err != nil {
			bad("trusted_key_servers", "%v", err)
		}
	}
	if c.FederationStateBatch < 0 || c.FederationStateBatch > 100_000 {
		bad("federation_state_batch", "%d: want 1 to 100000 events (0: the default)", c.FederationStateBatch)
	}
}

// LoadCertPool reads a PEM file of CA certificates into a pool with no
// other certificates.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// validLocalpart reports whether s may be the localpart of a new user ID.
func validLocalpart(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._=-/+", r)) {
			return false
		}
	}
	return true
}
