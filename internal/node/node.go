package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accountdata"
	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/admin"
	"github.com/matrixos/matrixos/internal/analytics"
	"github.com/matrixos/matrixos/internal/appservice"
	"github.com/matrixos/matrixos/internal/assistant"
	"github.com/matrixos/matrixos/internal/automation"
	"github.com/matrixos/matrixos/internal/bridges"
	"github.com/matrixos/matrixos/internal/clientapi"
	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/contracts"
	"github.com/matrixos/matrixos/internal/ephemeral"
	"github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/httppark"
	"github.com/matrixos/matrixos/internal/keys"
	"github.com/matrixos/matrixos/internal/ledger"
	"github.com/matrixos/matrixos/internal/media"
	"github.com/matrixos/matrixos/internal/moderation"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/push"
	"github.com/matrixos/matrixos/internal/ratelimit"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/search"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
	"github.com/matrixos/matrixos/internal/userdir"
)

// Version is the node's version, set at build time.
var Version = "0.1.0-dev"

// Node is a running Matrix OS node.
type Node struct {
	cfg config.Config
	log *slog.Logger

	DB       *storage.DB
	Accounts *accounts.Service
	Rooms    *rooms.Engine
	Sync     *sync.Service
	Client   *clientapi.Service
	Push     *push.Service
	Search   *search.Service
	UserDir  *userdir.Service
	Keys     *keys.Service

	AccountData *accountdata.Service
	Ephemeral   *ephemeral.Service
	Admin       *admin.Service
	RateLimit   *ratelimit.Limiter
	Media       *media.Service
	// Federation is nil while federation is off.
	Federation *federation.Service
	// AppserviceQueue delivers transactions to appservices.
	AppserviceQueue *appservice.Queue
	// Appservices holds the application services of <data>/appservices.
	Appservices *appservice.Service
	// Ledger is the events transparency log (docs/ledger.md).
	Ledger *ledger.Log
	// LedgerKeys is the identity keys transparency log; nil unless
	// ledger_keys is on.
	LedgerKeys *ledger.KeysLog
	// Witness cosigns other servers' ledger checkpoints; nil without
	// federation.
	Witness *ledger.Witness
	// Bridges runs the enabled bridges (internal/bridges).
	Bridges *bridges.Manager
	// Contracts runs the WebAssembly contracts attached to rooms
	// (docs/contracts.md).
	Contracts *contracts.Service
	// Analytics keeps the rooms' activity figures and forecasts
	// (docs/analytics.md).
	Analytics *analytics.Service
	// Assistant is @assistant (internal/assistant); other packages
	// register its commands. It runs unless the assistant setting is off.
	Assistant *assistant.Assistant
	// Moderation runs policy lists and room protections
	// (docs/moderation.md).
	Moderation *moderation.Service
	// Automation runs the rooms' automation rules (docs/automation.md).
	Automation *automation.Service

	csExtra csExtra // services wired by csExtraRoutes

	stopWatchingChanges func() // see accounts.Service.WatchChanges
	stopSweeps          func() // ends rooms.Engine.RunSweeps and waits for it
	stopAssistant       func() // ends the assistant's Run and waits for it

	registry *prometheus.Registry
	handler  http.Handler
	servers  []*http.Server
	// Addr is the client listener's address once listening.
	Addr string
	// FederationAddr is the federation listener's address once listening
	// ("" while federation is off).
	FederationAddr string
	// FederationListener, when set before Start, is used instead of
	// listening on federation_listen (tests that must know the port
	// before the node starts, to put it in the server name).
	FederationListener net.Listener

	// bodyStartTimeout and bodyMinRate bound how long a request body may
	// take (see limitBodyTime); tests shorten them.
	bodyStartTimeout time.Duration
	bodyMinRate      int64
}

// NewLogger builds the node's logger from the config.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// migrations lists every package's tables.
func migrations() []storage.Migration {
	return slices.Concat(
		accounts.Migrations,
		rooms.Migrations,
		sync.Migrations,
		push.Migrations,
		search.Migrations,
		keys.Migrations,
		accountdata.Migrations,
		ephemeral.Migrations,
		admin.Migrations,
		csExtraMigrations,
		media.Migrations,
		federation.Migrations,
		appservice.QueueMigrations,
		appservice.DirectoryMigrations,
		ledger.Migrations,
		ledger.WitnessMigrations,
		contracts.Migrations,
		analytics.Migrations,
		moderation.Migrations,
		automation.Migrations,
		bridges.Migrations,
		nodeMigrations,
	)
}

// OpenDB opens the configured database, applies every migration and
// checks that the database belongs to the configured server name (see
// bindServerName). The admin subcommands use it directly.
func OpenDB(ctx context.Context, cfg config.Config, log *slog.Logger) (*storage.DB, error) {
	db, err := storage.Open(ctx, cfg.DatabaseDSN(), log)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, migrations()); err != nil {
		db.Close()
		return nil, err
	}
	if err := bindServerName(ctx, db, cfg.ServerName); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// ReservedLocalparts are the localparts of the node's own users, which
// nobody may register: the assistant, the moderation, automation and
// contracts users and the server notices user (analytics answers
// through the assistant and has no user of its own).
func ReservedLocalparts(cfg config.Config) []string {
	return []string{assistant.Localpart, moderation.BotLocalpart, automation.BotLocalpart, contracts.BotLocalpart,
		cfg.ServerNoticesLocalpart}
}

// AccountsOptions derives the accounts settings from the config.
func AccountsOptions(cfg config.Config) accounts.Options {
	return accounts.Options{
		ServerName:          cfg.ServerName,
		OpenRegistration:    cfg.OpenRegistration,
		RegistrationTokens:  cfg.RegistrationTokens,
		SharedSecret:        cfg.RegistrationSharedSecret,
		AccessTokenLifetime: cfg.AccessTokenLifetime,
		Reserved:            ReservedLocalparts(cfg),
	}
}

// MediaOptions derives the media repository settings from the config.
func MediaOptions(cfg config.Config) media.Options {
	return media.Options{
		ServerName:            cfg.ServerName,
		DataDir:               cfg.DataDir,
		MaxUploadBytes:        cfg.MaxUploadBytes,
		QuotaBytes:            cfg.MediaQuotaBytes,
		LegacyUnauthenticated: cfg.MediaLegacyNoAuth,
		AllowPrivateNetworks:  cfg.AllowPrivateNetworks,
	}
}

// New builds a node: opens storage, loads the key, wires the services.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Node, error) {
	n := &Node{cfg: cfg, log: log}
	secureDataDir(cfg.DataDir, log)
	keyID, key, err := LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.DB, err = OpenDB(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	n.Accounts = accounts.New(n.DB, log, AccountsOptions(cfg))
	n.Appservices = appservice.New(n.DB, log, n.Accounts, appservice.Options{ServerName: cfg.ServerName, Dir: appservice.Dir(cfg.DataDir)})
	n.Accounts.Appservices = n.Appservices
	n.Accounts.HandleChanges(appservice.ChangeReload, n.Appservices.ApplyChange)
	n.Bridges = bridges.New(n.DB, log, n.bridgesOptions())
	n.Accounts.HandleChanges(bridges.ChangeBridges, n.Bridges.ApplyChange)
	n.csExtra.serverKey = key
	n.Rooms = rooms.New(n.DB, log, rooms.Signer{ServerName: cfg.ServerName, KeyID: keyID, Key: key})
	if err := n.Rooms.Load(ctx); err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.Appservices.Rooms = n.Rooms
	n.Appservices.LocalAliases = func(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
		return n.Client.LocalAliases(ctx, roomID)
	}
	// Refused registration files are logged; the node starts with the rest.
	n.Appservices.Reload(ctx)
	n.Sync = sync.New(n.DB, log, n.Accounts, n.Rooms)
	n.Client = clientapi.New(n.DB, log, n.Accounts, n.Rooms, id.RoomVersion(cfg.DefaultRoomVersion))
	n.Client.Appservices = n.Appservices
	n.Push = push.New(n.DB, log, n.Accounts, n.Rooms, push.Options{
		Wake: n.Sync.Notifier.Wake, ThreadSubscriptionRules: cfg.ThreadSubscriptionRules,
	})
	if err := n.Push.Load(ctx); err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.Rooms.OnAccept = append(n.Rooms.OnAccept, n.Push.OnAccept)
	n.Rooms.OnReject = append(n.Rooms.OnReject, n.Push.OnReject)
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, n.Push.CopyRulesOnUpgrade)
	n.Sync.AddSource(n.Push.RulesSource())
	n.Keys = keys.New(n.DB, log, n.Accounts, n.Rooms, n.Sync.Notifier)
	if err := n.Keys.Load(ctx); err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.Sync.AddSource(n.Keys)
	n.AccountData = accountdata.New(n.DB, log, n.Accounts, n.Sync.Notifier)
	n.AccountData.Virtual["m.push_rules"] = n.Push.AccountData
	n.Sync.AddSource(n.AccountData)
	n.Sync.Ignored = n.AccountData.IgnoredUsers
	n.Push.IgnoredUsers = n.AccountData.IgnoredUsers
	n.Push.IgnoreListsVersion = n.AccountData.IgnoreListsVersion
	n.Sync.InviteIgnored = n.AccountData.InviteIgnored
	n.Sync.DirectRooms = n.AccountData.DirectRooms
	n.Sync.RoomTags = n.AccountData.RoomTags
	n.Client.InviteBlocked = n.AccountData.InviteBlocked
	n.Ephemeral = ephemeral.New(n.DB, log, n.Accounts, n.Rooms, n.Sync, n.AccountData)
	n.Sync.OnSync = n.Ephemeral.SetFromSync
	n.Ephemeral.OnRead = func(ctx context.Context, user id.UserID, roomID id.RoomID, threadID string, pos int64) {
		if err := n.Push.MarkRead(ctx, user, roomID, threadID, pos); err != nil {
			log.Warn("clear notifications after receipt", "user_id", user, "room_id", roomID, "err", err)
		}
	}
	for _, src := range n.Ephemeral.Sources() {
		n.Sync.AddSource(src)
	}
	n.Sync.AddLateSource(n.Push.CountsSource())
	n.Search = search.New(n.DB, log, n.Accounts, n.Rooms)
	n.UserDir = userdir.New(n.Accounts, n.Rooms)
	n.Media, err = media.New(n.DB, log, n.Accounts, MediaOptions(cfg))
	if err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.Rooms.OnPurge = append(n.Rooms.OnPurge, n.Push.PurgeRoom, n.Ephemeral.PurgeRoom, n.AccountData.PurgeRoom)
	n.wireHooks()
	if err := n.openLedger(ctx, key); err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.Contracts, err = contracts.New(ctx, contracts.Options{DB: n.DB, Rooms: n.Rooms, Accounts: n.Accounts, Log: log,
		OnHalt: n.noticeContractHalt})
	if err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, n.Contracts.OnEvent)
	n.Analytics = analytics.New(analytics.Options{DB: n.DB, Rooms: n.Rooms, Accounts: n.Accounts, Log: log})
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, n.Analytics.OnEvent)
	n.Rooms.OnPurge = append(n.Rooms.OnPurge, analytics.PurgeRoom)
	n.newAssistant()
	n.Moderation = moderation.New(moderation.Options{DB: n.DB, Rooms: n.Rooms, Accounts: n.Accounts, Log: log,
		RoomVersion: id.RoomVersion(cfg.DefaultRoomVersion)})
	if n.Rooms.StateChecks == nil {
		n.Rooms.StateChecks = map[string]func(json.RawMessage) error{}
	}
	n.Rooms.StateChecks[moderation.ConfigType] = moderation.CheckConfig
	n.Rooms.RoomPolicy = n.Moderation.RoomPolicy
	if err := n.Moderation.EnsureBot(ctx); err != nil {
		// Protections then report, room by room, that it cannot join.
		log.Warn("moderation: the moderation user is not available", "err", err)
	}
	n.Rooms.OnEvent = append(n.Rooms.OnEvent, n.Moderation.OnEvent)
	if err := n.Assistant.Register(n.Moderation.Command()); err != nil {
		return nil, n.abandon(ctx, err)
	}
	if err := n.newAutomation(ctx); err != nil {
		return nil, n.abandon(ctx, err)
	}
	if err := n.registerCommands(); err != nil {
		return nil, n.abandon(ctx, err)
	}
	n.wireAppserviceQueue(n.Appservices)
	if cfg.Federation {
		n.Federation, err = federation.New(ctx, n.DB, log, FederationOptions(cfg, keyID, key))
		if err != nil {
			return nil, n.abandon(ctx, err)
		}
		n.wireFederation()
		if err := n.wireWitness(ctx, key); err != nil {
			return nil, n.abandon(ctx, err)
		}
	}
	// Past New's last failure, so that a failed New leaves no follower
	// running; the events committed meanwhile wait for them.
	n.startFollowers()

	n.registry = prometheus.NewRegistry()
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.registry.MustRegister(storage.Collectors()...)
	n.registry.MustRegister(httpRequests, httpDuration)
	if n.Federation != nil {
		n.registry.MustRegister(n.Federation.Outbox.Collectors()...)
		n.registry.MustRegister(n.Witness.Collectors()...)
	}
	n.registry.MustRegister(n.AppserviceQueue.Collectors()...)
	n.registry.MustRegister(n.Bridges.Collectors()...)
	n.registry.MustRegister(n.Analytics.Collectors()...)

	mux := http.NewServeMux()
	n.discoveryRoutes(mux)
	n.Accounts.Routes(mux)
	n.Sync.Routes(mux)
	n.Client.Routes(mux)
	n.Push.Routes(mux)
	n.Search.Routes(mux)
	n.UserDir.Routes(mux)
	n.Keys.Routes(mux)
	n.AccountData.Routes(mux)
	n.Ephemeral.Routes(mux)
	n.csExtraRoutes(mux)
	n.adminRoutes(mux)
	n.Media.Routes(mux)
	n.Appservices.Routes(mux, n.Accounts.Auth)
	n.Ledger.Routes(mux, n.Accounts, n.Rooms)
	n.Contracts.Routes(mux)
	n.Analytics.Routes(mux)
	n.Moderation.Routes(mux)
	n.Automation.Routes(mux)
	if n.LedgerKeys != nil {
		n.LedgerKeys.Routes(mux)
	}
	n.federationQueries()
	mux.HandleFunc("GET /{$}", n.serveWelcome)
	mux.HandleFunc("GET /favicon.ico", serveFavicon)
	// A known path with another method is 405, per the spec.
	mux.HandleFunc("/", mxhttp.Unmatched(mux, n.clientNotFound))
	if cfg.MetricsListen == "" {
		n.opsRoutes(mux, false)
	}
	// Every hook is wired: apply what the admin CLI changed while the
	// node was stopped, and from now on what it changes while it runs.
	n.stopWatchingChanges = n.Accounts.WatchChanges(ctx)
	n.stopSweeps = runUntilStopped(n.Rooms.RunSweeps)
	n.handler = mxhttp.Recover(log, r0Aliases(instrument(log, mux, mxhttp.CORS(mxhttp.CheckRequest(n.protect(mux))))))
	n.bodyStartTimeout, n.bodyMinRate = bodyStartTimeout, bodyMinRate
	return n, nil
}

// runUntilStopped runs f in the background until the returned stop is
// called, which waits for f to return.
func runUntilStopped(f func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// ReloadAppservices loads the registration files of <data>/appservices
// again (SIGHUP); the error names the files refused.
func (n *Node) ReloadAppservices(ctx context.Context) error {
	return n.Appservices.Reload(ctx)
}

// wireHooks connects services that react to each other's changes.
func (n *Node) wireHooks() {
	n.Accounts.Hooks.ProfileChanged = append(n.Accounts.Hooks.ProfileChanged, n.Client.OnProfileChanged)
	n.Accounts.Hooks.Deactivated = append(n.Accounts.Hooks.Deactivated, n.Client.OnDeactivated)
	n.Accounts.Hooks.Deactivated = append(n.Accounts.Hooks.Deactivated, n.Keys.OnDeactivated, n.Push.OnDeactivated, n.AccountData.OnDeactivated)
	n.Accounts.Hooks.DeviceDeleted = append(n.Accounts.Hooks.DeviceDeleted, n.AccountData.OnDeviceDeleted)
	n.Accounts.Hooks.DeviceDeleted = append(n.Accounts.Hooks.DeviceDeleted, n.Keys.OnDeviceDeleted)
	n.Accounts.Hooks.DeviceRenamed = append(n.Accounts.Hooks.DeviceRenamed, n.Keys.OnDeviceRenamed)
}

func (n *Node) opsRoutes(mux *http.ServeMux, withPprof bool) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var one int
		if err := n.DB.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// Handler is the node's client HTTP handler (for in-process tests).
func (n *Node) Handler() http.Handler { return n.handler }

// Start listens on the configured addresses and serves in the background.
func (n *Node) Start() error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.Listen, err)
	}
	n.Addr = ln.Addr().String()
	srv := n.newServer(n.handler)
	// Long-polls that wait leave net/http's goroutines (httppark).
	pl := httppark.NewListener(ln, srv.IdleTimeout)
	srv.BaseContext = pl.BaseContext
	go func() {
		if err := srv.Serve(pl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("client listener failed", "err", err)
		}
	}()
	if n.Federation != nil {
		if err := n.startFederation(); err != nil {
			return err
		}
		// Rooms joined with partial state before a restart go on
		// fetching their full state.
		if err := n.Rooms.StartResyncs(context.Background()); err != nil {
			return err
		}
		// Device-list updates that servers missed while a room's state
		// was partial, for rooms completed just before a restart.
		if err := n.Keys.StartCatchUps(context.Background()); err != nil {
			return err
		}
	}
	// Nothing goes to a bridge's appservice before the bridge runs.
	if err := n.Bridges.Hold(context.Background()); err != nil {
		return err
	}
	if err := n.startAppserviceQueue(); err != nil {
		return err
	}
	// A bridge that cannot start is supervised (and shown in its status);
	// only reading the table can fail here.
	if err := n.Bridges.Start(context.Background(), loopbackURL(n.Addr)); err != nil {
		n.log.Error("bridges", "err", err)
	}
	// Nor can the assistant stop the node: it is logged and stays off.
	if err := n.startAssistant(loopbackURL(n.Addr)); err != nil {
		n.log.Error("the assistant cannot start", "err", err)
	}
	if n.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", n.cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", n.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		n.opsRoutes(mux, true)
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		n.servers = append(n.servers, msrv)
		go msrv.Serve(mln)
		n.log.Info("metrics listener", "addr", mln.Addr().String())
	}
	return nil
}

// newServer makes a server for a public listener (client or federation):
// header, idle and body time limits, and the server's own errors logged at
// debug level. Shutdown stops it.
func (n *Node) newServer(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           limitBodyTime(h, n.bodyStartTimeout, n.bodyMinRate),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.servers = append(n.servers, srv)
	return srv
}

// Shutdown stops accepting requests, lets running ones finish (long-polls
// are cut short), then closes the database after the queued writes.
func (n *Node) Shutdown(ctx context.Context) error {
	// Bridges and the assistant stop first, while the node still answers
	// their last calls.
	n.Bridges.Stop()
	if n.stopAssistant != nil {
		n.stopAssistant()
	}
	n.Sync.Notifier.WakeAll()
	var errs []error
	for _, srv := range n.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if n.stopWatchingChanges != nil {
		n.stopWatchingChanges()
	}
	if n.stopSweeps != nil {
		n.stopSweeps()
	}
	if n.Federation != nil {
		n.Rooms.StopResyncs()
		n.Federation.Outbox.Stop()
	}
	n.AppserviceQueue.Stop()
	n.stopCSExtra()
	n.Keys.Close()
	n.Automation.Close()
	n.Analytics.Close()
	n.Search.Close()
	if err := n.Contracts.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.Moderation.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.Ledger.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if n.LedgerKeys != nil {
		if err := n.LedgerKeys.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, n.DB.Close())
	return errors.Join(errs...)
}

// startFollowers starts the loops that follow the committed events.
func (n *Node) startFollowers() {
	n.Ledger.Start()
	if n.LedgerKeys != nil {
		n.LedgerKeys.Start()
	}
	n.Contracts.Start()
	n.Analytics.Start()
	n.Search.Start()
	n.Automation.Start()
	n.Moderation.Start()
}

// abandon closes what a New that failed with err had opened, none of its
// followers started yet, and returns err.
func (n *Node) abandon(ctx context.Context, err error) error {
	if n.Automation != nil {
		n.Automation.Close()
	}
	if n.Moderation != nil {
		n.Moderation.Close(ctx)
	}
	if n.Analytics != nil {
		n.Analytics.Close()
	}
	if n.Search != nil {
		n.Search.Close()
	}
	if n.Contracts != nil {
		n.Contracts.Close(ctx)
	}
	if n.LedgerKeys != nil {
		n.LedgerKeys.Close(ctx)
	}
	if n.Ledger != nil {
		n.Ledger.Close(ctx)
	}
	n.DB.Close()
	return err
}

// Banner is the start-up text for people: where the node is, a warning
// when anyone may register, and how to create the first admin while there
// is none.
func (n *Node) Banner(ctx context.Context, configPath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Matrix OS %s is running.\n", Version)
	fmt.Fprintf(&b, "  Server name:  %s\n", n.cfg.ServerName)
	fmt.Fprintf(&b, "  Client API:   http://%s\n", n.Addr)
	if n.FederationAddr != "" {
		scheme := "http"
		if n.cfg.TLSCert != "" {
			scheme = "https"
		}
		fmt.Fprintf(&b, "  Federation:   %s://%s\n", scheme, n.FederationAddr)
	}
	fmt.Fprintf(&b, "  Data:         %s (config %s)\n", n.cfg.DataDir, configPath)
	fmt.Fprintf(&b, "  Database:     %s\n", n.DB.Dialect)
	if n.cfg.OpenRegistration {
		fmt.Fprintf(&b, "WARNING: open registration is on: anyone who can reach %s can create an account.\n", n.cfg.BaseURL())
	}
	if !n.hasAdmin(ctx) {
		fmt.Fprintf(&b, "Create the first admin with:\n  %s user add admin --admin --data %s\n", commandName(), n.cfg.DataDir)
	}
	return b.String()
}
