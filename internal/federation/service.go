package federation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Options configure the federation service.
type Options struct {
	ServerName string
	Key        *federation.SigningKey
	// Notaries are the trusted_key_servers.
	Notaries []string
	// AllowPrivateNetworks are CIDR ranges outbound requests may reach
	// although private or loopback.
	AllowPrivateNetworks []string
	// ExtraCAFile is a PEM file of CAs trusted beside the system's.
	ExtraCAFile string
	// WellKnownServer is what /.well-known/matrix/server delegates to.
	WellKnownServer string
	// Version is the software version served by /federation/v1/version.
	Version string
	// Resolver resolves names and SRV records (nil: the system's).
	Resolver *net.Resolver
}

// Service serves the federation listener's endpoints and holds the
// outbound client and the KeyRing.
type Service struct {
	serverName string
	log        *slog.Logger
	opts       Options
	// notaryTimeout is NotaryFetchTimeout; tests shorten it.
	notaryTimeout time.Duration

	// Client sends signed federation requests.
	Client *federation.Client
	// Keys finds other servers' verify keys.
	Keys *KeyRing
	// Outbox queues and delivers PDUs and EDUs to other servers.
	Outbox *Outbox
	// InviteBlocked, when set, reports whether invitee, one of this
	// server's users, refuses invites from inviter: /invite answers 403
	// M_INVITE_BLOCKED then.
	InviteBlocked func(ctx context.Context, invitee, inviter id.UserID) (bool, error)
	// LocalUserActive, when set, reports whether user, one of this
	// server's users, has an account that is not deactivated: /invite
	// answers 403 M_FORBIDDEN for one that has not.
	LocalUserActive func(ctx context.Context, user id.UserID) (bool, error)
	// FullStateJoins makes a join of a room new here ask for every member
	// (send_join without omit_members) instead of joining with partial
	// state; benchmarks set it to measure both.
	FullStateJoins bool

	mux *http.ServeMux
	// guard is the outbound client's: which addresses may be reached.
	guard *netguard.Guard

	rooms       *rooms.Engine // nil until ServeRooms
	acls        aclCache
	pdus        PDUReceiver
	eduMu       sync.RWMutex
	edus        map[string]EDUHandler
	txns        txnResults
	originSlots originSlots
}

// New builds the service: its outbound client, its KeyRing over the key
// cache, and its endpoints.
func New(ctx context.Context, db *storage.DB, log *slog.Logger, opts Options) (*Service, error) {
	guard, err := netguard.New(opts.AllowPrivateNetworks)
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	if opts.Resolver != nil {
		guard.Resolver = opts.Resolver
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if opts.ExtraCAFile != "" {
		if err := trustExtraCAs(roots, opts.ExtraCAFile); err != nil {
			return nil, err
		}
	}
	old, err := OldKeys(ctx, db)
	if err != nil {
		return nil, err
	}
	own := &ownKeys{serverName: opts.ServerName, key: opts.Key, old: old}
	s := &Service{serverName: opts.ServerName, log: log, opts: opts, notaryTimeout: NotaryFetchTimeout, edus: map[string]EDUHandler{}, guard: guard}
	s.Client = newClient(opts.ServerName, opts.Key, newTransport(guard, roots, opts.Resolver), "MatrixOS/"+opts.Version)
	s.Keys = newKeyRing(newKeyStore(db), s.Client, own, opts.Notaries, log)
	s.Outbox = newOutbox(db, log, opts.ServerName, s.Client.SendTransaction)
	s.mux = http.NewServeMux()
	s.routes()
	return s, nil
}

// trustExtraCAs adds the certificates of a PEM file to roots.
func trustExtraCAs(roots *x509.CertPool, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("federation_ca: %w", err)
	}
	if !roots.AppendCertsFromPEM(b) {
		return fmt.Errorf("federation_ca: %s holds no PEM certificate", file)
	}
	return nil
}

// Handler is the federation listener's handler.
func (s *Service) Handler() http.Handler { return s.mux }

// AllowedMethods lists the methods under which the federation listener
// serves r's path (none for a path it does not know).
func (s *Service) AllowedMethods(r *http.Request) []string { return mxhttp.AllowedMethods(s.mux, r) }

// Handle registers an endpoint on the federation listener that requires
// X-Matrix authentication (see Authenticate).
func (s *Service) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.Authenticate(h))
}

// HandleUnauthenticated registers an endpoint on the federation listener
// that takes no X-Matrix authentication, for the few the spec leaves open
// (openid/userinfo, which the token in its query authenticates).
func (s *Service) HandleUnauthenticated(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

func (s *Service) routes() {
	s.mux.HandleFunc("GET /.well-known/matrix/server", s.ServeWellKnown)
	s.mux.HandleFunc("GET /_matrix/federation/v1/version", mxhttp.Handle(s.version))
	s.mux.HandleFunc("GET /_matrix/key/v2/server", mxhttp.Handle(s.serverKey))
	s.mux.HandleFunc("GET /_matrix/key/v2/server/{keyId}", mxhttp.Handle(s.serverKey)) // deprecated form
	s.mux.HandleFunc("GET /_matrix/key/v2/query/{serverName}", mxhttp.Handle(s.queryOne))
	s.mux.HandleFunc("POST /_matrix/key/v2/query", mxhttp.Handle(s.queryMany))
	s.Handle("PUT /_matrix/federation/v1/send/{txnId}", handleSend(s))
	s.mux.HandleFunc("/", mxhttp.Unmatched(s.mux, func(w http.ResponseWriter, r *http.Request) {
		mxhttp.WriteError(w, r, mxhttp.Unrecognized("unrecognized federation request"))
	}))
}

// ServeWellKnown answers /.well-known/matrix/server with the host and port
// other servers should send federation to.
func (s *Service) ServeWellKnown(w http.ResponseWriter, r *http.Request) {
	mxhttp.WriteJSON(w, http.StatusOK, map[string]string{"m.server": s.opts.WellKnownServer})
}

func (s *Service) version(w http.ResponseWriter, r *http.Request) (any, error) {
	return map[string]any{"server": map[string]string{"name": "Matrix OS", "version": s.opts.Version}}, nil
}

func (s *Service) serverKey(w http.ResponseWriter, r *http.Request) (any, error) {
	raw, err := s.Keys.own.response(s.Keys.now())
	if err != nil {
		return nil, err
	}
	return json.RawMessage(raw), nil
}

// queryOne is GET /_matrix/key/v2/query/{serverName}.
func (s *Service) queryOne(w http.ResponseWriter, r *http.Request) (any, error) {
	serverName := r.PathValue("serverName")
	if err := config.ValidServerName(serverName); err != nil {
		return nil, mxhttp.InvalidParam("serverName: %v", err)
	}
	minValid := s.Keys.now().UnixMilli()
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, mxhttp.InvalidParam("minimum_valid_until_ts must be a timestamp in milliseconds")
		}
		minValid = n
	}
	return s.notarise(r.Context(), map[string]map[id.KeyID]int64{serverName: nil}, minValid)
}

// MaxQueryServers bounds the servers one POST /_matrix/key/v2/query may
// ask about.
const MaxQueryServers = 100

// queryMany is POST /_matrix/key/v2/query.
func (s *Service) queryMany(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct {
		ServerKeys map[string]map[id.KeyID]json.RawMessage `json:"server_keys"`
	}
	if err := mxhttp.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.ServerKeys == nil {
		return nil, mxhttp.BadJSON("server_keys is required")
	}
	if len(req.ServerKeys) > MaxQueryServers {
		return nil, mxhttp.TooLarge("at most %d servers per query", MaxQueryServers)
	}
	now := s.Keys.now().UnixMilli()
	want := map[string]map[id.KeyID]int64{}
	for serverName, keyIDs := range req.ServerKeys {
		if err := config.ValidServerName(serverName); err != nil {
			return nil, mxhttp.BadJSON("server_keys: %v", err)
		}
		want[serverName] = map[id.KeyID]int64{}
		for keyID, raw := range keyIDs {
			var c queryCriteria
			if err := mxhttp.Unmarshal(raw, &c); err != nil {
				return nil, mxhttp.BadJSON("server_keys.%s.%s: want an object with minimum_valid_until_ts", serverName, keyID)
			}
			ts := now
			if c.MinimumValidUntilTS != nil {
				ts = *c.MinimumValidUntilTS
			}
			want[serverName][keyID] = ts
		}
	}
	return s.notarise(r.Context(), want, now)
}

// notarise answers a key query: for each server, the signed responses the
// cache holds, fetched from the server directly first when none is valid
// until the time asked (the latest minimum_valid_until_ts of its keys, or
// minValid when no key names one) or one lacks a key asked for, each with
// this server's signature added. A server that cannot be reached and has
// nothing cached is left out.
func (s *Service) notarise(ctx context.Context, want map[string]map[id.KeyID]int64, minValid int64) (any, error) {
	// Servers are looked up in parallel, and fetches share one deadline,
	// so that a query naming many slow servers still answers in time.
	fetchCtx, cancel := context.WithTimeout(ctx, s.notaryTimeout)
	defer cancel()
	type result struct {
		responses [][]byte
		err       error
	}
	results := make([]result, 0, len(want))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, notaryParallelism)
	for serverName, keyIDs := range want {
		serverMin := minValid
		if len(keyIDs) > 0 {
			serverMin = 0
			for _, ts := range keyIDs {
				serverMin = max(serverMin, ts)
			}
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			responses, err := s.responsesFor(ctx, fetchCtx, serverName, keyIDs, serverMin)
			mu.Lock()
			results = append(results, result{responses, err})
			mu.Unlock()
		})
	}
	wg.Wait()
	out := queryResponse{ServerKeys: []json.RawMessage{}}
	for _, r := range results {
		if r.err != nil {
			return nil, r.err
		}
		for _, raw := range r.responses {
			signed, err := addSignature(raw, s.serverName, s.opts.Key)
			if err != nil {
				return nil, err
			}
			out.ServerKeys = append(out.ServerKeys, signed)
		}
	}
	return out, nil
}

// NotaryFetchTimeout bounds the time one key query spends fetching keys
// from the servers it names.
const NotaryFetchTimeout = 20 * time.Second

// notaryParallelism bounds the servers one key query fetches from at once.
const notaryParallelism = 8

// responsesFor returns the responses for one server of a key query,
// fetching them with fetchCtx when the cache has none fresh enough.
func (s *Service) responsesFor(ctx, fetchCtx context.Context, serverName string, keyIDs map[id.KeyID]int64, minValid int64) ([][]byte, error) {
	if serverName == s.serverName {
		raw, err := s.Keys.own.response(s.Keys.now())
		if err != nil {
			return nil, err
		}
		return [][]byte{raw}, nil
	}
	cached, latest, err := s.Keys.store.responses(ctx, serverName)
	if err != nil {
		return nil, err
	}
	if latest < minValid || !coversKeys(cached, keyIDs) {
		if cached, err = s.refresh(ctx, fetchCtx, serverName, keyIDs, minValid); err != nil {
			return nil, err
		}
	}
	var out [][]byte
	for raw, ids := range cached {
		if len(keyIDs) == 0 || anyKey(ids, keyIDs) {
			out = append(out, []byte(raw))
		}
	}
	return out, nil
}

// refresh fetches serverName's keys for a key query and returns the
// responses cached for it then. It holds the KeyRing's fetch lock of the
// server, so that concurrent queries share one fetch instead of each making
// their own, and a server asked recently without getting what was wanted
// is not asked again at once: queries cannot make this node fetch in a
// loop.
func (s *Service) refresh(ctx, fetchCtx context.Context, serverName string, keyIDs map[id.KeyID]int64, minValid int64) (map[string][]id.KeyID, error) {
	unlock := s.Keys.lockServer(serverName)
	defer unlock()
	store := s.Keys.store
	cached, latest, err := store.responses(ctx, serverName)
	if err != nil {
		return nil, err
	}
	if latest >= minValid && coversKeys(cached, keyIDs) || !s.Keys.mayFetch(serverName) {
		return cached, nil
	}
	if err := s.Keys.fetchDirect(fetchCtx, serverName); err != nil {
		s.log.Debug("notary: fetch keys", "server_name", serverName, "err", err)
	} else if cached, latest, err = store.responses(ctx, serverName); err != nil {
		return nil, err
	}
	if latest < minValid || !coversKeys(cached, keyIDs) {
		s.Keys.missed(serverName)
	}
	return cached, nil
}

func coversKeys(cached map[string][]id.KeyID, want map[id.KeyID]int64) bool {
	for keyID := range want {
		found := false
		for _, ids := range cached {
			if anyKey(ids, map[id.KeyID]int64{keyID: 0}) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func anyKey(ids []id.KeyID, want map[id.KeyID]int64) bool {
	for _, k := range ids {
		if _, ok := want[k]; ok {
			return true
		}
	}
	return false
}
