package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the node's configuration. Each field's yaml tag is its name in
// the file; the flag is that name with dashes (--server-name) and the
// environment variable is MATRIXOS_ and the name in capitals
// (MATRIXOS_SERVER_NAME). The doc tag is written as a comment into the
// generated file and shown by --help.
type Config struct {
	DataDir                  string        `yaml:"data" doc:"Directory for the database, signing key and media."`
	ServerName               string        `yaml:"server_name" doc:"The server name: the part after ':' in user IDs. Cannot change once users exist."`
	Listen                   string        `yaml:"listen" doc:"Address of the Client-Server API listener (plain HTTP; put TLS in front for public use)."`
	PublicBaseURL            string        `yaml:"public_baseurl" doc:"URL clients use to reach this node, served in /.well-known/matrix/client. Empty: http://<listen>."`
	Database                 string        `yaml:"database" doc:"Database: empty for embedded SQLite in the data directory, a postgres://user:pass@host/db (or postgresql://) URL, or sqlite:PATH or a file path for SQLite elsewhere. Anything else is refused."`
	OpenRegistration         bool          `yaml:"open_registration" doc:"Let anyone register with m.login.dummy. For tests and private networks only."`
	RegistrationSharedSecret string        `yaml:"registration_shared_secret" doc:"Secret for the Synapse-compatible admin registration API (/_synapse/admin/v1/register). Empty: disabled."`
	RegistrationTokens       bool          `yaml:"registration_tokens" doc:"Let people register with a registration token (m.login.registration_token) that an admin handed out, while open registration is off."`
	MetricsListen            string        `yaml:"metrics_listen" doc:"Address of a separate listener for /metrics, /health and pprof. Empty: /metrics and /health on the client listener (pprof off)."`
	LogLevel                 string        `yaml:"log_level" doc:"Log level: debug, info, warn or error."`
	LogFormat                string        `yaml:"log_format" doc:"Log format: text or json."`
	DefaultRoomVersion       string        `yaml:"default_room_version" doc:"Room version for new rooms when the client asks for none (12 is the version the spec recommends)."`
	ServerNoticesLocalpart   string        `yaml:"server_notices_localpart" doc:"Localpart of the system user that sends server notices (/_synapse/admin/v1/send_server_notice), as Synapse's server_notices.system_mxid_localpart; Complement expects _server. Changing it gives users new notices rooms."`
	MaxUploadBytes           int64         `yaml:"max_upload_bytes" doc:"Largest media upload, in bytes."`
	MediaQuotaBytes          int64         `yaml:"media_quota_bytes" doc:"Total bytes of media each user may upload (0: no quota). Server admins are exempt."`
	MediaLegacyNoAuth        bool          `yaml:"media_legacy_unauthenticated" doc:"Serve the deprecated /_matrix/media/v3 download and thumbnail endpoints to requests without an access token. Off: only authenticated requests get media, as on current servers."`
	ThreadSubscriptionRules  bool          `yaml:"thread_subscription_push_rules" doc:"Start users with MSC4306's thread subscription push rules enabled: a message in a thread notifies only if the user subscribed to the thread (as Element X does for threads they write in or are mentioned in) or it mentions them. Off: the rules are listed disabled and every thread message notifies, which clients that do not subscribe to threads need; users can turn the rules on or off either way."`
	MaxEventDelay            time.Duration `yaml:"max_event_delay" doc:"Longest delay a client may ask for when it schedules a delayed event (MSC4140, which Element Call uses to leave calls of clients that went away); longer ones are refused with M_MAX_DELAY_EXCEEDED."`
	AccessTokenLifetime      time.Duration `yaml:"access_token_lifetime" doc:"Lifetime of access tokens for clients that support refresh tokens (0: never expire, except those of OAuth sessions, which then last an hour)."`
	AllowPrivateNetworks     []string      `yaml:"allow_private_networks" doc:"CIDR ranges that outbound requests (federation, previews, push) may reach although private or loopback."`
	RateLimit                bool          `yaml:"rate_limit" doc:"Limit request rates on login, registration, sending events and media upload, per user (per client IP without an access token). Server admins and appservices are exempt."`
	RateLimitLoginPerMin     int64         `yaml:"rate_limit_login_per_minute" doc:"Password and token checks (login, every User-Interactive Authentication stage, registration tokens) a client IP, and apart from it an account, may make per minute (0: unlimited)."`
	RateLimitLoginBurst      int64         `yaml:"rate_limit_login_burst" doc:"Password and token checks a client IP, and apart from it an account, may make at once before the per-minute rate applies."`
	RateLimitRegPerMin       int64         `yaml:"rate_limit_register_per_minute" doc:"Registration requests (accounts through /register or the sign-up page, OAuth clients, OAuth device authorizations, OAuth authorization requests and the browser sessions the OAuth pages start) a client IP may make per minute (0: unlimited)."`
	RateLimitRegBurst        int64         `yaml:"rate_limit_register_burst" doc:"Registration requests a client IP may make at once (a registration takes two: one to start the flow, one to finish it)."`
	RateLimitSendPerMin      int64         `yaml:"rate_limit_send_per_minute" doc:"Events (messages, state, redactions) a user may send per minute (0: unlimited)."`
	RateLimitSendBurst       int64         `yaml:"rate_limit_send_burst" doc:"Events a user may send at once."`
	RateLimitUploadPerMin    int64         `yaml:"rate_limit_upload_per_minute" doc:"Media uploads a user may make per minute (0: unlimited)."`
	RateLimitUploadBurst     int64         `yaml:"rate_limit_upload_burst" doc:"Media uploads a user may make at once."`
	Federation               bool          `yaml:"federation" doc:"Talk to other Matrix servers: serve the federation listener (keys, notary, version) and /.well-known/matrix/server. Off: this node is an island. See docs/federation.md."`
	FederationListen         string        `yaml:"federation_listen" doc:"Address of the federation listener, used when federation is on: HTTPS with tls_cert and tls_key, plain HTTP without them (behind a TLS reverse proxy)."`
	TLSCert                  string        `yaml:"tls_cert" doc:"PEM certificate chain file the federation listener serves HTTPS with (together with tls_key). Empty: plain HTTP."`
	TLSKey                   string        `yaml:"tls_key" doc:"PEM private key file for tls_cert."`
	FederationCA             string        `yaml:"federation_ca" doc:"PEM file of extra certificate authorities trusted for outbound federation, beside the system's (a private CA for test networks)."`
	TrustedKeyServers        []string      `yaml:"trusted_key_servers" doc:"Server names of notaries asked for other servers' signing keys before asking those servers directly (comma-separated). Empty: keys are fetched directly only."`
	FederationStateBatch     int           `yaml:"federation_state_batch" doc:"Events of a big room's state (a send_join answer, or the /state answer of a partial-state join's resync: hundreds of thousands of events) decoded, checked and written at a time: the answer is read as a stream, so the memory it takes while it is checked is bounded by this, not by the room (about 2 KiB per event held); the events received during the resync are read that many at a time when they are checked again against the full state. 1 to 100000; 0 is the default."`
	FederationPresence       bool          `yaml:"federation_presence" doc:"Send local users' presence to the other servers they share rooms with and accept theirs (m.presence EDUs). Off: presence stays on this server, as each update would otherwise go to every server of every room."`
	Ledger                   string        `yaml:"ledger" doc:"Which rooms' events go into the node's transparency log (docs/ledger.md): room (each room whose admins set the org.matrixos.ledger state event to {\"enabled\": true}) or all (every room)."`
	LedgerPublic             bool          `yaml:"ledger_public" doc:"Serve the events transparency log's checkpoint and tiles to anyone (docs/ledger.md). Off: only to server admins, as the entries name the room and event IDs of every logged room (with ledger: all, direct messages included); the log's key and the proof endpoint are unchanged."`
	LedgerKeys               bool          `yaml:"ledger_keys" doc:"Keep the identity keys transparency log (docs/ledger.md): every local user's device and cross-signing keys, served to anyone without authentication. Off: the log is neither kept nor served, as it lists every local user and device that uses end-to-end encryption."`
	Assistant                bool          `yaml:"assistant" doc:"Run the private assistant @assistant:<server> (docs/assistant.md): an end-to-end encrypting user, without a password, that joins only the rooms it is invited to and answers !assistant commands and mentions there."`
	AssistantModelURL        string        `yaml:"assistant_model_url" doc:"Base URL of an OpenAI-compatible model server (Ollama: http://127.0.0.1:11434/v1) that writes the assistant's summaries, answers, translations and drafts. The model server sees the room content the assistant sends it. Empty: only the offline engine, nothing leaves the node."`
	AssistantModel           string        `yaml:"assistant_model" doc:"The chat model the assistant asks at assistant_model_url (\"llama3.2\"); required with it."`
	AssistantAPIKeyFile      string        `yaml:"assistant_api_key_file" doc:"File holding the API key sent to the model server as a bearer token; it must not be readable by other users (chmod 600), else the model server is not used. Empty: none (a local server)."`
	AssistantEmbeddingsModel string        `yaml:"assistant_embeddings_model" doc:"An embeddings model at assistant_model_url that orders the messages a question is answered from. Empty: the offline search alone orders them."`
	AssistantModelPrivate    bool          `yaml:"assistant_model_allow_private" doc:"Let the assistant reach assistant_model_url although its host is a loopback or private address (a model server on this machine or network). Off: the model URL goes through the same guard as URL previews, and only allow_private_networks opens private ranges."`
	AssistantModelStream     bool          `yaml:"assistant_model_stream" doc:"Ask the model server for streamed chat completions (server-sent events)."`
	AssistantModelTimeout    time.Duration `yaml:"assistant_model_timeout" doc:"Longest wait for one answer of the model server; a slower one is given up and the offline engine answers."`
	AssistantRemoteInvites   bool          `yaml:"assistant_remote_invites" doc:"Let users of other servers invite the assistant into their rooms. Off: it declines their invites and joins only at the invitation of this server's users."`
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		DataDir:                "./matrixos-data",
		ServerName:             "localhost:8008",
		Listen:                 "127.0.0.1:8008",
		LogLevel:               "info",
		LogFormat:              "text",
		DefaultRoomVersion:     "12",
		ServerNoticesLocalpart: "server",
		MaxUploadBytes:         50 << 20,
		AccessTokenLifetime:    0,
		MaxEventDelay:          24 * time.Hour,
		RegistrationTokens:     true,
		RateLimit:              true,
		RateLimitLoginPerMin:   20,
		RateLimitLoginBurst:    10,
		RateLimitRegPerMin:     10,
		RateLimitRegBurst:      10,
		RateLimitSendPerMin:    600,
		RateLimitSendBurst:     100,
		RateLimitUploadPerMin:  60,
		RateLimitUploadBurst:   20,
		FederationListen:       ":8448",
		FederationStateBatch:   1000,
		Ledger:                 "room",
		Assistant:              true,
		AssistantModelStream:   true,
		AssistantModelTimeout:  2 * time.Minute,
	}
}

// FileName is the config file's name inside the data directory.
const FileName = "matrixos.yaml"

// DatabaseDSN returns the database to open: the configured URL, or the
// SQLite file in the data directory.
func (c *Config) DatabaseDSN() string {
	if c.Database != "" {
		return c.Database
	}
	return filepath.Join(c.DataDir, "matrixos.db")
}

// Redacted returns the configuration with its secrets hidden, for
// printing: the database URL's password and the registration shared secret.
func (c Config) Redacted() Config {
	if u, err := url.Parse(c.Database); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			c.Database = u.Redacted()
		}
	}
	if c.RegistrationSharedSecret != "" {
		c.RegistrationSharedSecret = "xxxxx"
	}
	return c
}

// BaseURL is the URL clients should use to reach the node.
func (c *Config) BaseURL() string {
	if c.PublicBaseURL != "" {
		return strings.TrimRight(c.PublicBaseURL, "/")
	}
	return "http://" + c.Listen
}

type field struct {
	name string // yaml name
	doc  string
	v    reflect.Value
}

func (c *Config) fields() []field {
	rv := reflect.ValueOf(c).Elem()
	rt := rv.Type()
	out := make([]field, 0, rt.NumField())
	for i := range rt.NumField() {
		f := rt.Field(i)
		out = append(out, field{name: f.Tag.Get("yaml"), doc: f.Tag.Get("doc"), v: rv.Field(i)})
	}
	return out
}

// FlagName returns the command-line flag for a setting.
func FlagName(name string) string { return strings.ReplaceAll(name, "_", "-") }

// EnvName returns the environment variable for a setting.
func EnvName(name string) string { return "MATRIXOS_" + strings.ToUpper(name) }

func setString(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Slice:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func formatValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Slice:
		s := make([]string, v.Len())
		for i := range s {
			s[i] = v.Index(i).String()
		}
		return strings.Join(s, ",")
	case reflect.Int64:
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			return time.Duration(v.Int()).String()
		}
	}
	return fmt.Sprint(v.Interface())
}

// Flags holds the command-line overrides registered by RegisterFlags.
type Flags struct {
	ConfigFile string
	names      map[string]string // flag name -> setting name
	fs         *flag.FlagSet
}

// RegisterFlags adds --config and one flag per setting to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{names: map[string]string{}, fs: fs}
	fs.StringVar(&f.ConfigFile, "config", "", "config file (default: <data>/"+FileName+")")
	def := Default()
	for _, fl := range def.fields() {
		name := FlagName(fl.name)
		f.names[name] = fl.name
		usage := fl.doc + " [$" + EnvName(fl.name) + "]"
		if fl.v.Kind() == reflect.Bool {
			fs.Bool(name, fl.v.Bool(), usage)
		} else {
			fs.String(name, formatValue(fl.v), usage)
		}
	}
	return f
}

// Parse parses args into fs as fs.Parse does, and also takes a boolean
// flag's value from the next word when it is true or false
// (--open-registration false): the flag package would otherwise set the flag
// to true and leave "false" as a positional argument.
func Parse(fs *flag.FlagSet, args []string) error {
	return fs.Parse(joinBoolValues(fs, args))
}

// joinBoolValues rewrites "--flag true|false" as "--flag=true|false" for
// fs's boolean flags, stopping at the first argument that is not a flag.
func joinBoolValues(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, isFlag := strings.CutPrefix(a, "-")
		name = strings.TrimPrefix(name, "-")
		if !isFlag || a == "-" || a == "--" {
			return append(out, args[i:]...)
		}
		out = append(out, a)
		if strings.Contains(name, "=") || i+1 >= len(args) {
			continue
		}
		fl := fs.Lookup(name)
		if fl == nil {
			continue
		}
		if !isBoolFlag(fl) {
			out = append(out, args[i+1]) // the flag's value
			i++
			continue
		}
		if v := strings.ToLower(args[i+1]); v == "true" || v == "false" {
			out[len(out)-1] = a + "=" + v
			i++
		}
	}
	return out
}

func isBoolFlag(fl *flag.Flag) bool {
	b, ok := fl.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// collect returns the settings given on the command line, by setting name.
func (f *Flags) collect() map[string]string {
	out := map[string]string{}
	if f == nil || f.fs == nil {
		return out
	}
	f.fs.Visit(func(fl *flag.Flag) {
		if name, ok := f.names[fl.Name]; ok {
			out[name] = fl.Value.String()
		}
	})
	return out
}

// Load builds the effective configuration: defaults, then the config file
// (created with comments if it does not exist and create is set), then the
// environment, then flags. It returns the path of the config file used.
func Load(flags *Flags, create bool) (Config, string, error) {
	c := Default()
	set := flags.collect()
	env := map[string]string{}
	for _, fl := range c.fields() {
		if v, ok := os.LookupEnv(EnvName(fl.name)); ok {
			env[fl.name] = v
		}
	}
	// The data directory decides where the file lives, so resolve it first.
	if v, ok := env["data"]; ok {
		c.DataDir = v
	}
	if v, ok := set["data"]; ok {
		c.DataDir = v
	}
	path := ""
	if flags != nil {
		path = flags.ConfigFile
	}
	if path == "" {
		path = os.Getenv("MATRIXOS_CONFIG")
	}
	explicit := path != ""
	if path == "" {
		path = filepath.Join(c.DataDir, FileName)
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		dataDir := c.DataDir
		if err := yaml.Unmarshal(b, &c); err != nil {
			return c, path, fmt.Errorf("parse %s: %w", path, err)
		}
		if !explicit {
			c.DataDir = dataDir // the file sits in the data dir it describes
		}
	case errors.Is(err, os.ErrNotExist) && create && !explicit:
		// First start: write the defaults with the overrides given now, below.
	case errors.Is(err, os.ErrNotExist) && !explicit:
	default:
		return c, path, fmt.Errorf("read config: %w", err)
	}
	apply := func(src map[string]string, what string) error {
		for _, fl := range c.fields() {
			if v, ok := src[fl.name]; ok {
				if err := setString(fl.v, v); err != nil {
					return fmt.Errorf("%s %s: %w", what, fl.name, err)
				}
			}
		}
		return nil
	}
	if err := apply(env, "environment"); err != nil {
		return c, path, err
	}
	if err := apply(set, "flag"); err != nil {
		return c, path, err
	}
	if err := c.Validate(); err != nil {
		return c, path, err
	}
	if errors.Is(err, os.ErrNotExist) && create && !explicit {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return c, path, fmt.Errorf("create data directory: %w", err)
		}
		if err := os.WriteFile(path, c.Commented(), 0o600); err != nil {
			return c, path, fmt.Errorf("write config: %w", err)
		}
	}
	return c, path, nil
}

// Commented renders the configuration as a YAML file with each setting's
// documentation as a comment.
func (c *Config) Commented() []byte {
	var buf bytes.Buffer
	buf.WriteString("# Matrix OS configuration.\n# Every setting can also be given as a flag (--name-with-dashes) or an\n# environment variable (MATRIXOS_NAME). See docs/configuration.md.\n")
	for _, fl := range c.fields() {
		if fl.name == "data" {
			continue // the file lives in the data directory
		}
		buf.WriteString("\n# " + fl.doc + "\n")
		out, _ := yaml.Marshal(map[string]any{fl.name: fl.v.Interface()})
		if fl.v.Type() == reflect.TypeOf(time.Duration(0)) {
			out = []byte(fl.name + ": " + time.Duration(fl.v.Int()).String() + "\n")
		}
		buf.Write(out)
	}
	return buf.Bytes()
}
