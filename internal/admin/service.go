package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Options configure the service.
type Options struct {
	// Version is the server version reported to admin tools.
	Version string
	// RoomVersion is the version of new server notices rooms.
	RoomVersion id.RoomVersion
	// NoticesLocalpart is the localpart of the system user that sends
	// server notices; empty means DefaultNoticesLocalpart.
	NoticesLocalpart string
}

// TagSetter stores room account data; the server notices room gets its
// m.server_notice tag through it.
type TagSetter interface {
	Set(ctx context.Context, user id.UserID, roomID id.RoomID, typ string, content json.RawMessage) error
}

// Service serves the admin and reporting endpoints.
type Service struct {
	db         *storage.DB
	log        *slog.Logger
	accounts   *accounts.Service
	rooms      *rooms.Engine
	opts       Options
	serverName string

	// Media is the media repository; nil answers the media admin
	// endpoints with 501. Set it before serving.
	Media MediaAdmin
	// Tags stores the server notices room tag; nil skips the tag. Set it
	// before serving.
	Tags TagSetter
	// Federation is the outbound federation queue; nil (federation off)
	// answers the federation admin endpoints with 404. Set it before
	// serving.
	Federation FederationAdmin
	// Bridges is the bridge manager; nil answers the bridge endpoints
	// with 404. Set it before serving.
	Bridges BridgesAdmin
	// OnReport, when set, is told of each stored report (moderation posts
	// it to the moderators' room). Set it before serving.
	OnReport func(ctx context.Context, rep Report)

	noticeMu sync.Mutex // serialises creating notices rooms

	deleteMu sync.Mutex
	deletes  map[string]*deleteStatus // delete_id -> status
}

// New returns the service.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine, opts Options) *Service {
	if opts.RoomVersion == "" {
		opts.RoomVersion = id.RoomV11
	}
	if opts.NoticesLocalpart == "" {
		opts.NoticesLocalpart = DefaultNoticesLocalpart
	}
	return &Service{
		db: db, log: log, accounts: acc, rooms: eng, opts: opts, serverName: eng.ServerName(),
		deletes: map[string]*deleteStatus{},
	}
}

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	s.reportRoutes(mux)
	s.userRoutes(mux)
	s.roomRoutes(mux)
	s.mediaRoutes(mux)
	s.tokenRoutes(mux)
	s.noticeRoutes(mux)
	s.federationRoutes(mux)
	s.bridgeRoutes(mux)
	mux.HandleFunc("GET /_synapse/admin/v1/server_version", s.admin(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		return map[string]string{"server_version": s.opts.Version}, nil
	}))
}

// admin wraps h so only server admins reach it; every call is logged.
func (s *Service) admin(h accounts.AuthedHandler) http.HandlerFunc {
	return s.accounts.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		if !sess.IsAdmin {
			return nil, mxhttp.Forbidden("you are not a server admin")
		}
		s.log.Info("admin API call", "admin", sess.UserID, "method", r.Method, "path", r.URL.Path)
		return h(w, r, sess)
	})
}

// localUser parses the {userId} path value, which must name a user of
// this server.
func (s *Service) localUser(r *http.Request) (id.UserID, error) {
	uid := id.UserID(r.PathValue("userId"))
	_, hs, err := uid.Parse()
	if err != nil {
		return "", mxhttp.InvalidParam("invalid user ID %q", uid)
	}
	if hs != s.serverName {
		return "", mxhttp.InvalidParam("%s is not a user of this server", uid)
	}
	return uid, nil
}

// existingUser is localUser for a user that must exist.
func (s *Service) existingUser(r *http.Request) (*accounts.User, error) {
	uid, err := s.localUser(r)
	if err != nil {
		return nil, err
	}
	u, ok, err := s.accounts.GetUser(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxhttp.NotFound("user not found")
	}
	return u, nil
}

// page reads the from/limit query parameters (Synapse's offset paging).
func page(r *http.Request, defLimit int) (from, limit int, err error) {
	q := r.URL.Query()
	from, limit = 0, defLimit
	if v := q.Get("from"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 0 {
			return 0, 0, mxhttp.InvalidParam("from must be a non-negative integer")
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return 0, 0, mxhttp.InvalidParam("limit must be a non-negative integer")
		}
	}
	return from, min(limit, 10000), nil
}

// boolParam reads an optional boolean query parameter.
func boolParam(r *http.Request, name string) (*bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, mxhttp.InvalidParam("%s must be true or false", name)
	}
	return &b, nil
}

// window slices items[from:from+limit] and reports the next offset, or -1.
func window[T any](items []T, from, limit int) ([]T, int) {
	if from > len(items) {
		from = len(items)
	}
	end := min(from+limit, len(items))
	next := -1
	if end < len(items) {
		next = end
	}
	out := items[from:end]
	if out == nil {
		out = []T{}
	}
	return out, next
}

func nowMS() int64 { return time.Now().UnixMilli() }

func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}
