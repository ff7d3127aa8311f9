//go:build goolm

package host

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/bridges/guard"
)

// Run runs the bridge until ctx is done (then it stops it and returns
// nil), the bridge fails to start (the error says why) or a goroutine of
// the host or the connector panics (the error is the guard.PanicError).
func Run(ctx context.Context, opts Options) error {
	cfg, err := LoadConfig(opts)
	if err != nil {
		return err
	}
	log := newLogger(opts)
	listener, err := listen(cfg)
	if err != nil {
		return err
	}
	db, err := OpenDatabase(filepath.Join(opts.Dir, DatabaseFile), opts.Network.GetName().NetworkID, log)
	if err != nil {
		listener.Close()
		return err
	}
	mc := matrix.NewConnector(cfg)
	mc.IgnoreUnsupportedServer = false
	br := bridgev2.NewBridge("", db, log, &cfg.Bridge, mc, opts.Network, commands.NewProcessor)
	mc.AS.DoublePuppetValue = "matrixos-" + opts.Name
	if opts.OnState != nil {
		mc.AS.Router.HandleFunc("POST "+statePath, stateHandler(cfg.AppService.ASToken, opts.OnState))
	}
	srv := &http.Server{Handler: mc.AS.Router, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(listener) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()

	// A panic in a goroutine of the host or the connector fails this run
	// (see package guard); the connector finds the guard in Start's ctx.
	g := guard.New()
	startCtx := guard.NewContext(log.WithContext(ctx), g)
	if err := br.StartConnectors(startCtx); err != nil {
		br.StopWithTimeout(5 * time.Second)
		return fmt.Errorf("bridge %s: start: %w", opts.Name, err)
	}
	if err := br.StartLogins(startCtx); err != nil {
		br.StopWithTimeout(5 * time.Second)
		return fmt.Errorf("bridge %s: start logins: %w", opts.Name, err)
	}
	g.Go(func() { br.PostStart(startCtx) })
	if opts.Started != nil {
		opts.Started()
	}
	select {
	case <-ctx.Done():
		br.StopWithTimeout(5 * time.Second)
		return nil
	case err := <-served:
		br.StopWithTimeout(5 * time.Second)
		return fmt.Errorf("bridge %s: appservice listener: %w", opts.Name, err)
	case <-g.Failed():
		log.Error().Err(g.Err()).Msg("Bridge panicked; stopping it")
		br.StopWithTimeout(5 * time.Second)
		return fmt.Errorf("bridge %s: %w", opts.Name, g.Err())
	}
}

// newLogger logs to opts.Log as text without colours.
func newLogger(opts Options) zerolog.Logger {
	if opts.Log == nil {
		return zerolog.Nop()
	}
	w := zerolog.ConsoleWriter{Out: opts.Log, NoColor: true, TimeFormat: time.RFC3339}
	level := zerolog.InfoLevel
	if opts.Debug {
		level = zerolog.DebugLevel
	}
	return zerolog.New(w).With().Timestamp().Str("bridge", opts.Name).Logger().Level(level)
}

// listen opens the appservice listener on the host and port of the
// registration's url.
func listen(cfg *bridgeconfig.Config) (net.Listener, error) {
	addr := net.JoinHostPort(cfg.AppService.Hostname, strconv.Itoa(int(cfg.AppService.Port)))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("appservice listener: %w", err)
	}
	return l, nil
}

// stateHandler receives the bridge states bridgev2 posts to its status
// endpoint.
func stateHandler(asToken string, onState func(status.BridgeState)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+asToken {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		var state status.BridgeState
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&state); err != nil {
			http.Error(w, "bad bridge state", http.StatusBadRequest)
			return
		}
		onState(state)
		w.WriteHeader(http.StatusNoContent)
	}
}

// OpenDatabase opens (creating it) the bridge's SQLite database with
// foreign keys on, write-ahead logging and immediate write transactions,
// wrapped for bridgev2.
func OpenDatabase(path, owner string, log zerolog.Logger) (*dbutil.Database, error) {
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=foreign_keys(1)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=busy_timeout(10000)"
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600); err != nil {
		return nil, fmt.Errorf("bridge database: %w", err)
	} else {
		f.Close()
	}
	raw, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("bridge database: %w", err)
	}
	raw.SetMaxOpenConns(4)
	db, err := dbutil.NewWithDB(raw, "sqlite3")
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("bridge database: %w", err)
	}
	db.Owner = "megabridge/" + owner
	db.Log = dbutil.ZeroLogger(log.With().Str("db_section", "main").Logger())
	return db, nil
}

// LoadConfig builds the bridge's config: the defaults, then
// <dir>/config.yaml over them, then what the node and the registration
// decide. The network section is decoded into the connector's config over
// its example config.
func LoadConfig(opts Options) (*bridgeconfig.Config, error) {
	reg, err := appservice.LoadRegistration(opts.RegistrationFile)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: registration: %w", opts.Name, err)
	}
	cfg := defaultConfig(opts.Name)
	data, err := os.ReadFile(filepath.Join(opts.Dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", opts.Name, err)
	}
	if err := yaml.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("bridge %s: %s: %w", opts.Name, ConfigFile, err)
	}
	if err := applyNode(cfg, opts, reg); err != nil {
		return nil, err
	}
	if err := decodeNetwork(cfg, opts.Network); err != nil {
		return nil, fmt.Errorf("bridge %s: network config: %w", opts.Name, err)
	}
	if err := validate(cfg, opts.Network); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", opts.Name, err)
	}
	return cfg, nil
}

// defaultConfig is mautrix's example bridge config, for what the file
// leaves out.
func defaultConfig(name string) *bridgeconfig.Config {
	cfg := &bridgeconfig.Config{}
	b := &cfg.Bridge
	b.CommandPrefix = "!" + name
	b.PersonalFilteringSpaces = true
	b.PrivateChatPortalMeta = true
	b.BridgeStatusNotices = "errors"
	b.UnknownErrorMaxAutoReconnects = 10
	b.TagOnlyOnCreate = true
	b.OnlyBridgeTags = []event.RoomTag{event.RoomTagFavourite, event.RoomTagLowPriority}
	b.MuteOnlyOnCreate = true
	b.PortalEventBuffer = 64
	b.KickMatrixUsers = true
	b.PortalCreateFilter.Mode = bridgeconfig.PortalCreateFilterModeDeny
	b.Relay = defaultRelay()
	cfg.Matrix.MessageErrorNotices = true
	cfg.Matrix.SyncDirectChatList = true
	cfg.Matrix.FederateRooms = true
	cfg.Matrix.UploadFileThreshold = 5 << 20
	cfg.Matrix.MaxDownloadSize = -1
	cfg.Backfill.MaxInitialMessages = 50
	cfg.Backfill.MaxCatchupMessages = 500
	cfg.Backfill.UnreadHoursThreshold = 720
	cfg.Backfill.Threads.MaxInitialMessages = 50
	cfg.Backfill.Queue.BatchSize = 100
	cfg.Backfill.Queue.BatchDelay = 20
	cfg.Backfill.Queue.MaxBatches = -1
	e := &cfg.Encryption
	e.Allow, e.Default, e.Appservice, e.MSC4190 = true, true, true, true
	e.AllowKeySharing = true
	e.VerificationLevels.Receive = id.TrustStateUnset
	e.VerificationLevels.Send = id.TrustStateUnset
	e.VerificationLevels.Share = id.TrustStateCrossSignedTOFU
	e.Rotation.Milliseconds = 7 * 24 * 60 * 60 * 1000
	e.Rotation.Messages = 100
	cfg.Homeserver.Software = bridgeconfig.SoftwareStandard
	cfg.Homeserver.RetryLimit = 4
	return cfg
}

// relayDefaults is mautrix's example relay section: set-relay refused,
// and the formats relayed messages and names are written with, which a
// connector that makes a portal's relay itself (Discord's bot login) needs
// even when the command is off.
const relayDefaults = `
enabled: false
admin_only: true
prefer_default: true
allow_bridge: true
default_relays: []
user_distinguishers: []
message_formats:
    m.text: "<b>{{ .Sender.DisambiguatedName }}</b>: {{ .Message }}"
    m.notice: "<b>{{ .Sender.DisambiguatedName }}</b>: {{ .Message }}"
    m.emote: "* <b>{{ .Sender.DisambiguatedName }}</b> {{ .Message }}"
    m.file: "<b>{{ .Sender.DisambiguatedName }}</b> sent a file{{ if .Caption }}: {{ .Caption }}{{ end }}"
    m.image: "<b>{{ .Sender.DisambiguatedName }}</b> sent an image{{ if .Caption }}: {{ .Caption }}{{ end }}"
    m.audio: "<b>{{ .Sender.DisambiguatedName }}</b> sent an audio file{{ if .Caption }}: {{ .Caption }}{{ end }}"
    m.video: "<b>{{ .Sender.DisambiguatedName }}</b> sent a video{{ if .Caption }}: {{ .Caption }}{{ end }}"
    m.location: "<b>{{ .Sender.DisambiguatedName }}</b> sent a location{{ if .Caption }}: {{ .Caption }}{{ end }}"
displayname_format: "{{ .DisambiguatedName }}"
`

// defaultRelay decodes relayDefaults; decoding, not a struct literal,
// compiles the formats' templates.
func defaultRelay() bridgeconfig.RelayConfig {
	var relay bridgeconfig.RelayConfig
	if err := yaml.Unmarshal([]byte(relayDefaults), &relay); err != nil {
		panic("host: relayDefaults: " + err.Error())
	}
	return relay
}

// applyNode sets what the node and the registration decide.
func applyNode(cfg *bridgeconfig.Config, opts Options, reg *appservice.Registration) error {
	u, err := url.Parse(reg.URL)
	if err != nil || u.Scheme != "http" || u.Hostname() == "" {
		return fmt.Errorf("bridge %s: registration url %q is not http://host:port", opts.Name, reg.URL)
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		return fmt.Errorf("bridge %s: registration url %q has no port", opts.Name, reg.URL)
	}
	cfg.Homeserver.Address = opts.HomeserverURL
	cfg.Homeserver.Domain = opts.ServerName
	cfg.Homeserver.Websocket = false
	cfg.Homeserver.WSProxy = ""
	as := &cfg.AppService
	as.ID = reg.ID
	as.Address = reg.URL
	as.Hostname = u.Hostname()
	as.Port = uint16(port)
	as.NoServer = true // Run serves the appservice router on its own listener
	as.ASToken = reg.AppToken
	as.HSToken = reg.ServerToken
	as.Bot.Username = reg.SenderLocalpart
	if as.Bot.Displayname == "" {
		as.Bot.Displayname = opts.Network.GetName().DisplayName + " bridge bot"
	}
	as.EphemeralEvents = true
	as.UsernameTemplate = opts.Name + "_{{.}}"
	if opts.OnState != nil {
		cfg.Homeserver.StatusEndpoint = reg.URL + statePath
	} else {
		cfg.Homeserver.StatusEndpoint = ""
	}
	cfg.Homeserver.MessageSendCheckpointEndpoint = ""
	cfg.Bridge.Backfill = cfg.Backfill
	// Neither provisioning nor public or direct media are served: the
	// appservice listener is loopback only.
	cfg.Provisioning.SharedSecret = "disable"
	cfg.PublicMedia.Enabled = false
	cfg.DirectMedia.Enabled = false
	cfg.Analytics = bridgeconfig.AnalyticsConfig{}
	return nil
}

// decodeNetwork decodes the connector's example config, then the file's
// network section over it, into the connector's config.
func decodeNetwork(cfg *bridgeconfig.Config, network bridgev2.NetworkConnector) error {
	example, data, _ := network.GetConfig()
	if data == nil {
		return nil
	}
	if example != "" {
		if err := yaml.Unmarshal([]byte(example), data); err != nil {
			return fmt.Errorf("example: %w", err)
		}
	}
	if cfg.Network.Kind == 0 {
		return nil
	}
	return cfg.Network.Decode(data)
}

// validate refuses a config the bridge cannot run with.
func validate(cfg *bridgeconfig.Config, network bridgev2.NetworkConnector) error {
	switch {
	case !cfg.Bridge.Permissions.IsConfigured():
		return errors.New("bridge.permissions names no user or server of this node")
	case cfg.Encryption.Allow && cfg.Encryption.PickleKey == "":
		return errors.New("encryption.pickle_key is empty")
	}
	if v, ok := network.(bridgev2.ConfigValidatingNetwork); ok {
		if err := v.ValidateConfig(); err != nil {
			return fmt.Errorf("network config: %w", err)
		}
	}
	return nil
}
