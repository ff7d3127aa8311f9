package media

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/storage"
)

// Options configure the media repository.
type Options struct {
	ServerName string
	// DataDir holds media.key and the media directory.
	DataDir string
	// MaxUploadBytes is the largest upload (0: 50 MiB).
	MaxUploadBytes int64
	// QuotaBytes is how much each user may store in total (0: no quota).
	// Server admins are exempt.
	QuotaBytes int64
	// LegacyUnauthenticated serves the deprecated /_matrix/media/v3
	// download and thumbnail endpoints to requests without an access
	// token. Off, those endpoints answer 404 M_NOT_FOUND unless the
	// request carries a valid access token.
	LegacyUnauthenticated bool
	// AllowPrivateNetworks lists CIDR ranges URL previews may fetch from
	// although they are private or loopback.
	AllowPrivateNetworks []string
	// MaxPendingUploads bounds how many created but not yet uploaded
	// media IDs a user may hold (0: 50).
	MaxPendingUploads int
	// UnusedExpiry is how long a created media ID waits for its upload
	// (0: 24h).
	UnusedExpiry time.Duration
}

// Service is the media repository.
type Service struct {
	db    *storage.DB
	log   *slog.Logger
	acc   *accounts.Service
	store *Store
	opts  Options

	guard   *netguard.Guard
	fetcher *http.Client
	preview previewCache

	// remote fetches other servers' media (nil while federation is off);
	// locationClient follows the redirects their downloads may answer.
	remote         *remoteMedia
	locationClient *http.Client

	waitMu  sync.Mutex
	waiters map[string]*waiter // media ID -> closed when uploaded
}

// New opens the media store in opts.DataDir. acc may be nil when the HTTP
// routes are not used.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, opts Options) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = 50 << 20
	}
	if opts.MaxPendingUploads <= 0 {
		opts.MaxPendingUploads = 50
	}
	if opts.UnusedExpiry <= 0 {
		opts.UnusedExpiry = 24 * time.Hour
	}
	store, err := OpenStore(opts.DataDir)
	if err != nil {
		return nil, err
	}
	guard, err := netguard.New(opts.AllowPrivateNetworks)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return &Service{
		db: db, log: log, acc: acc, store: store, opts: opts,
		guard:   guard,
		fetcher: guard.Client(netguard.ClientOptions{Timeout: previewTimeout}),
		// The whole of remoteFetchTimeout: a redirected download may be large.
		locationClient: guard.Client(netguard.ClientOptions{Timeout: remoteFetchTimeout}),
		preview:        previewCache{entries: map[string]*previewEntry{}},
		waiters:        map[string]*waiter{},
	}, nil
}

// Media is one media item's metadata.
type Media struct {
	Server        string
	MediaID       string
	UserID        id.UserID
	ContentType   string
	Filename      string
	Size          int64
	SHA256        string // "" while an async upload is pending
	CreatedTS     int64
	ExpiresTS     int64 // pending uploads only
	Quarantined   bool
	QuarantinedBy id.UserID
}

// Pending reports whether the media ID was created but not uploaded yet.
func (m *Media) Pending() bool { return m.SHA256 == "" }

// URI is the media's mxc:// URI.
func (m *Media) URI() id.ContentURI { return id.ContentURI{Homeserver: m.Server, FileID: m.MediaID} }

const mediaColumns = `server, media_id, user_id, content_type, filename, size, sha256, created_ts, expires_ts, quarantined, quarantined_by`

func scanMedia(row interface{ Scan(...any) error }) (*Media, error) {
	var m Media
	if err := row.Scan(&m.Server, &m.MediaID, &m.UserID, &m.ContentType, &m.Filename, &m.Size, &m.SHA256, &m.CreatedTS, &m.ExpiresTS, &m.Quarantined, &m.QuarantinedBy); err != nil {
		return nil, err
	}
	return &m, nil
}

// Get returns a media item's metadata, or nil if there is none.
func (s *Service) Get(ctx context.Context, server, mediaID string) (*Media, error) {
	m, err := scanMedia(s.db.QueryRow(ctx, `SELECT `+mediaColumns+` FROM media WHERE server = $1 AND media_id = $2`, server, mediaID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load media %s/%s: %w", server, mediaID, err)
	}
	return m, nil
}

// ListByUser returns the media a user uploaded, newest first: at most
// limit items (0: 100) created before the timestamp before (0: now).
func (s *Service) ListByUser(ctx context.Context, user id.UserID, before int64, limit int) ([]*Media, error) {
	if before <= 0 {
		before = 1 << 62
	}
	if limit <= 0 {
		limit = 100
	}
	return s.list(ctx, user, `user_id = $1 AND created_ts < $2 ORDER BY created_ts DESC, media_id LIMIT $3`, string(user), before, limit)
}

// UserMediaPage returns a page of a user's uploads, newest first: at most
// limit items (0: 100) from offset from, and how many there are in all.
func (s *Service) UserMediaPage(ctx context.Context, user id.UserID, from, limit int) ([]*Media, int, error) {
	if limit <= 0 {
		limit = 100
	}
	var total int
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1`, string(user)).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count media of %s: %w", user, err)
	}
	page, err := s.list(ctx, user, `user_id = $1 ORDER BY created_ts DESC, media_id LIMIT $2 OFFSET $3`, string(user), limit, max(from, 0))
	return page, total, err
}

func (s *Service) list(ctx context.Context, user id.UserID, where string, args ...any) ([]*Media, error) {
	rows, err := s.db.Query(ctx, `SELECT `+mediaColumns+` FROM media WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list media of %s: %w", user, err)
	}
	defer rows.Close()
	var out []*Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, fmt.Errorf("list media of %s: %w", user, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Usage returns the bytes a user's uploads take (each upload counts, even
// when its content is shared with others).
func (s *Service) Usage(ctx context.Context, user id.UserID) (int64, error) {
	var n sql.NullInt64
	if err := s.db.QueryRow(ctx, `SELECT SUM(size) FROM media WHERE user_id = $1`, string(user)).Scan(&n); err != nil {
		return 0, fmt.Errorf("media usage of %s: %w", user, err)
	}
	return n.Int64, nil
}

// newMediaID returns a random media ID.
func newMediaID() string {
	return accounts.RandomString("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 24)
}

// UploadRequest is content to store.
type UploadRequest struct {
	User        id.UserID // "" for content the server stores for itself
	ContentType string
	Filename    string
	Body        io.Reader
	// Limit bounds the body (0: the configured upload limit).
	Limit int64
	// Exempt skips the user's quota (server admins).
	Exempt bool
}

var (
	errCannotOverwrite = &mxhttp.Error{Status: http.StatusConflict, Code: "M_CANNOT_OVERWRITE_MEDIA", Message: "media already uploaded"}
	errQuota           = mxhttp.Forbidden("media storage quota exceeded")
)

// limitFor returns how many bytes the user may upload now and the error
// for going over it.
func (s *Service) limitFor(ctx context.Context, req *UploadRequest) (int64, error, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = s.opts.MaxUploadBytes
	}
	tooLarge := error(mxhttp.TooLarge("cannot upload files larger than %d bytes", limit))
	if s.opts.QuotaBytes > 0 && req.User != "" && !req.Exempt {
		used, err := s.Usage(ctx, req.User)
		if err != nil {
			return 0, nil, err
		}
		if left := s.opts.QuotaBytes - used; left < limit {
			limit = max(left, 0)
			tooLarge = errQuota
		}
	}
	return limit, tooLarge, nil
}

// Upload stores new content under a new media ID.
func (s *Service) Upload(ctx context.Context, req UploadRequest) (*Media, error) {
	m := &Media{
		Server: s.opts.ServerName, MediaID: newMediaID(), UserID: req.User,
		ContentType: req.ContentType, Filename: req.Filename, CreatedTS: time.Now().UnixMilli(),
	}
	err := s.put(ctx, &req, func(b Blob) error {
		m.SHA256, m.Size = b.SHA256, b.Size
		return s.db.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO media (`+mediaColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, FALSE, '')`,
				m.Server, m.MediaID, string(m.UserID), m.ContentType, m.Filename, m.Size, m.SHA256, m.CreatedTS)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// put stores the body and runs commit under the content's lock; when
// commit fails, content that nothing refers to is removed again.
func (s *Service) put(ctx context.Context, req *UploadRequest, commit func(Blob) error) error {
	limit, tooLarge, err := s.limitFor(ctx, req)
	if err != nil {
		return err
	}
	b, err := s.store.Put(req.Body, limit, commit)
	if errors.Is(err, errTooLarge) {
		return tooLarge
	}
	if err != nil {
		if b.SHA256 != "" {
			if gcErr := s.gc(ctx, b.SHA256); gcErr != nil {
				s.log.Warn("remove unreferenced media", "sha256", b.SHA256, "err", gcErr)
			}
		}
		var me *mxhttp.Error
		if errors.As(err, &me) {
			return err
		}
		return fmt.Errorf("upload media: %w", err)
	}
	return nil
}

// gc removes stored content that no media item or thumbnail refers to.
func (s *Service) gc(ctx context.Context, sha string) error {
	return s.store.Remove(sha, func() (bool, error) {
		var n int
		err := s.db.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM media WHERE sha256 = $1) + (SELECT COUNT(*) FROM media_thumbnails WHERE sha256 = $1)`, sha).Scan(&n)
		return n > 0, err
	})
}

// Create reserves a media ID for a later upload by the same user.
func (s *Service) Create(ctx context.Context, user id.UserID) (*Media, error) {
	now := time.Now().UnixMilli()
	m := &Media{Server: s.opts.ServerName, MediaID: newMediaID(), UserID: user, ContentType: "application/octet-stream",
		CreatedTS: now, ExpiresTS: now + s.opts.UnusedExpiry.Milliseconds()}
	var limited bool
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM media WHERE user_id = $1 AND sha256 = '' AND expires_ts <= $2`, string(user), now); err != nil {
			return err
		}
		var pending int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1 AND sha256 = ''`, string(user)).Scan(&pending); err != nil {
			return err
		}
		if pending >= s.opts.MaxPendingUploads {
			limited = true
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO media (`+mediaColumns+`) VALUES ($1, $2, $3, $4, '', 0, '', $5, $6, FALSE, '')`,
			m.Server, m.MediaID, string(user), m.ContentType, m.CreatedTS, m.ExpiresTS)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create media ID: %w", err)
	}
	if limited {
		return nil, mxhttp.LimitExceeded("too many pending uploads").With("retry_after_ms", int64(60000))
	}
	return m, nil
}

// UploadTo stores content for a media ID made by Create. Only its creator
// may upload, once, before it expires.
func (s *Service) UploadTo(ctx context.Context, server, mediaID string, req UploadRequest) error {
	m, err := s.Get(ctx, server, mediaID)
	if err != nil {
		return err
	}
	if m == nil || (m.Pending() && m.ExpiresTS <= time.Now().UnixMilli()) {
		return mxhttp.NotFound("unknown media ID")
	}
	if m.UserID != req.User {
		return mxhttp.Forbidden("this media ID was created by another user")
	}
	if !m.Pending() {
		return errCannotOverwrite
	}
	err = s.put(ctx, &req, func(b Blob) error {
		var claimed bool
		err := s.db.Write(ctx, func(tx *storage.Tx) error {
			res, err := tx.Exec(ctx, `UPDATE media SET content_type = $1, filename = $2, size = $3, sha256 = $4, expires_ts = 0
				WHERE server = $5 AND media_id = $6 AND sha256 = ''`, req.ContentType, req.Filename, b.Size, b.SHA256, server, mediaID)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			claimed = n == 1
			return err
		})
		if err == nil && !claimed {
			return errCannotOverwrite
		}
		return err
	})
	if err != nil {
		return err
	}
	s.notifyUploaded(mediaID)
	return nil
}

func (s *Service) notifyUploaded(mediaID string) {
	s.waitMu.Lock()
	if w, ok := s.waiters[mediaID]; ok {
		close(w.ch)
		delete(s.waiters, mediaID)
	}
	s.waitMu.Unlock()
}

// waiter is closed when a pending upload arrives.
type waiter struct {
	ch chan struct{}
	n  int // requests waiting
}

// waitUploaded returns a channel closed when mediaID is uploaded, and a
// function to call when done waiting.
func (s *Service) waitUploaded(mediaID string) (<-chan struct{}, func()) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	w, ok := s.waiters[mediaID]
	if !ok {
		w = &waiter{ch: make(chan struct{})}
		s.waiters[mediaID] = w
	}
	w.n++
	return w.ch, func() {
		s.waitMu.Lock()
		defer s.waitMu.Unlock()
		w.n--
		if w.n == 0 && s.waiters[mediaID] == w {
			delete(s.waiters, mediaID)
		}
	}
}

// Open returns a reader of a media item's content.
func (s *Service) Open(m *Media) (Reader, error) {
	r, err := s.store.Open(m.SHA256)
	if err != nil {
		return nil, fmt.Errorf("open media %s/%s: %w", m.Server, m.MediaID, err)
	}
	return r, nil
}

// Delete removes a media item, its thumbnails, and the stored files that
// nothing else refers to. Deleting unknown media is not an error.
func (s *Service) Delete(ctx context.Context, server, mediaID string) error {
	var hashes []string
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		hashes = hashes[:0]
		rows, err := tx.Query(ctx, `SELECT sha256 FROM media WHERE server = $1 AND media_id = $2
			UNION SELECT sha256 FROM media_thumbnails WHERE server = $1 AND media_id = $2`, server, mediaID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			if h != "" {
				hashes = append(hashes, h)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM media_thumbnails WHERE server = $1 AND media_id = $2`, server, mediaID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM media WHERE server = $1 AND media_id = $2`, server, mediaID)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete media %s/%s: %w", server, mediaID, err)
	}
	var errs []error
	for _, h := range hashes {
		errs = append(errs, s.gc(ctx, h))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete media %s/%s: %w", server, mediaID, err)
	}
	return nil
}

// Quarantine hides a media item (or, with on false, serves it again): its
// content is no longer served, though it stays stored.
func (s *Service) Quarantine(ctx context.Context, server, mediaID string, on bool) error {
	return s.setQuarantine(ctx, server, mediaID, on, "")
}

// QuarantineBy is Quarantine on, recording the admin who asked.
func (s *Service) QuarantineBy(ctx context.Context, server, mediaID string, by id.UserID) error {
	return s.setQuarantine(ctx, server, mediaID, true, by)
}

func (s *Service) setQuarantine(ctx context.Context, server, mediaID string, on bool, by id.UserID) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE media SET quarantined = $1, quarantined_by = $2 WHERE server = $3 AND media_id = $4`, on, string(by), server, mediaID)
		return err
	})
	if err != nil {
		return fmt.Errorf("quarantine media %s/%s: %w", server, mediaID, err)
	}
	return nil
}
