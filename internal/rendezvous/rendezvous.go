// Package rendezvous serves the rendezvous sessions of MSC4108 (QR code
// login), under its unstable prefix: POST
// /_matrix/client/unstable/org.matrix.msc4108/rendezvous creates a session
// holding a small text/plain payload and answers its URL, at which anyone
// who has the URL reads the payload (GET), replaces it (PUT) or ends the
// session (DELETE). Two devices, one that scanned the other's QR code,
// exchange the messages of their secure channel this way; the new device
// then signs in with the OAuth 2.0 device authorization grant, which the
// existing one approves.
//
// The sessions need no access token: trust lives in the channel the
// devices build on top. Each write gets a fresh strong ETag, and a PUT
// must name the current one in If-Match (412 with the MSC's
// M_CONCURRENT_WRITE otherwise), so neither device overwrites a payload it
// has not read. Sessions live in memory, expire a fixed time after their
// creation, hold at most MaxPayload bytes, and are at most MaxSessions at
// once; creating one is rate limited per client IP (internal/ratelimit).
package rendezvous

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"strings"
	gosync "sync"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Path is the endpoint that creates sessions; a session's URL is Path/{id}.
const Path = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"

// Defaults of Options.
const (
	// MaxPayload is the MSC's payload limit, 4 KiB.
	MaxPayload = 4096
	// DefaultTTL leaves time for the user to compare the check code and
	// approve the new device (the MSC suggests about a minute).
	DefaultTTL = 2 * time.Minute
	// DefaultMaxSessions bounds the memory the sessions take.
	DefaultMaxSessions = 10000
)

// Options configure the service.
type Options struct {
	// BaseURL returns the URL clients reach the node at, which session
	// URLs start with.
	BaseURL func() string
	// TTL is how long a session lives after its creation.
	TTL time.Duration
	// MaxSessions is the most sessions alive at once; a creation beyond
	// it is refused with 403 M_FORBIDDEN.
	MaxSessions int
	// Now is the clock (tests set it).
	Now func() time.Time
}

// Service holds the sessions.
type Service struct {
	opts Options

	mu       gosync.Mutex
	sessions map[string]*session
}

// session is one rendezvous: the payload last written, its ETag (unquoted)
// and when it was written, and when the session ends.
type session struct {
	payload  []byte
	etag     string
	modified time.Time
	expires  time.Time
}

// New returns the service.
func New(opts Options) *Service {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{opts: opts, sessions: map[string]*session{}}
}

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+Path, s.create)
	mux.HandleFunc("GET "+Path+"/{id}", s.get)
	mux.HandleFunc("PUT "+Path+"/{id}", s.put)
	mux.HandleFunc("DELETE "+Path+"/{id}", s.delete)
}

// concurrentWrite answers a PUT whose If-Match is not the current ETag:
// the MSC's new error code, carried as its unstable prefix asks.
func concurrentWrite() *mxhttp.Error {
	return (&mxhttp.Error{Status: http.StatusPreconditionFailed, Code: "M_UNKNOWN", Message: "the payload was changed since you read it"}).
		With("org.matrix.msc4108.errcode", "M_CONCURRENT_WRITE")
}

func errNoSession() error { return mxhttp.NotFound("no such rendezvous session; it may have expired") }

// randomToken returns 128 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readPayload checks the headers of a POST or PUT and reads its body.
func readPayload(r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil, mxhttp.MissingParam("Content-Type is required")
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return nil, mxhttp.InvalidParam("Content-Type must be text/plain")
	}
	if r.ContentLength < 0 {
		return nil, mxhttp.MissingParam("Content-Length is required")
	}
	if r.ContentLength > MaxPayload {
		return nil, mxhttp.TooLarge("the payload is larger than %d bytes", MaxPayload)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxPayload+1))
	if err != nil {
		return nil, mxhttp.BadRequest("could not read the payload")
	}
	if len(b) > MaxPayload {
		return nil, mxhttp.TooLarge("the payload is larger than %d bytes", MaxPayload)
	}
	return b, nil
}

// parseETag reads an If-Match or If-None-Match value: one strong ETag,
// quoted as RFC 9110 writes it (an unquoted one is taken as is). Weak,
// wildcard and list values are malformed here, as the MSC says.
func parseETag(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" || v == "*" || strings.HasPrefix(v, "W/") || strings.Contains(v, ",") {
		return "", mxhttp.InvalidParam("expected one strong ETag")
	}
	if inner, ok := strings.CutPrefix(v, `"`); ok {
		if inner, ok = strings.CutSuffix(inner, `"`); !ok || strings.Contains(inner, `"`) {
			return "", mxhttp.InvalidParam("malformed ETag")
		}
		return inner, nil
	}
	return v, nil
}

// headers sets the headers every answer about a session carries.
func headers(w http.ResponseWriter, sess *session) {
	h := w.Header()
	h.Set("ETag", `"`+sess.etag+`"`)
	h.Set("Expires", sess.expires.UTC().Format(http.TimeFormat))
	h.Set("Last-Modified", sess.modified.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// lookupLocked returns the live session with the request's {id}; s.mu is held.
func (s *Service) lookupLocked(r *http.Request) (*session, error) {
	id := r.PathValue("id")
	sess := s.sessions[id]
	if sess == nil {
		return nil, errNoSession()
	}
	if !s.opts.Now().Before(sess.expires) {
		delete(s.sessions, id)
		return nil, errNoSession()
	}
	return sess, nil
}

// sweepLocked drops the expired sessions; s.mu is held.
func (s *Service) sweepLocked(now time.Time) {
	for id, sess := range s.sessions {
		if !now.Before(sess.expires) {
			delete(s.sessions, id)
		}
	}
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	payload, err := readPayload(r)
	if err != nil {
		mxhttp.WriteError(w, r, err)
		return
	}
	now := s.opts.Now()
	sess := &session{payload: payload, etag: randomToken(), modified: now, expires: now.Add(s.opts.TTL)}
	id := randomToken()
	s.mu.Lock()
	if len(s.sessions) >= s.opts.MaxSessions {
		s.sweepLocked(now)
	}
	full := len(s.sessions) >= s.opts.MaxSessions
	if !full {
		s.sessions[id] = sess
	}
	s.mu.Unlock()
	if full {
		mxhttp.WriteError(w, r, mxhttp.Forbidden("too many rendezvous sessions are open; try again later"))
		return
	}
	headers(w, sess)
	mxhttp.WriteJSON(w, http.StatusCreated, map[string]string{"url": strings.TrimSuffix(s.opts.BaseURL(), "/") + Path + "/" + id})
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	var noneMatch string
	if v := r.Header.Get("If-None-Match"); v != "" {
		var err error
		if noneMatch, err = parseETag(v); err != nil {
			mxhttp.WriteError(w, r, err)
			return
		}
	}
	s.mu.Lock()
	sess, err := s.lookupLocked(r)
	var snap session
	if err == nil {
		snap = *sess
	}
	s.mu.Unlock()
	if err != nil {
		mxhttp.WriteError(w, r, err)
		return
	}
	headers(w, &snap)
	if noneMatch == snap.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	w.Write(snap.payload)
}

func (s *Service) put(w http.ResponseWriter, r *http.Request) {
	ifMatch := r.Header.Get("If-Match")
	if ifMatch == "" {
		mxhttp.WriteError(w, r, mxhttp.MissingParam("If-Match is required"))
		return
	}
	want, err := parseETag(ifMatch)
	if err != nil {
		mxhttp.WriteError(w, r, err)
		return
	}
	payload, err := readPayload(r)
	if err != nil {
		mxhttp.WriteError(w, r, err)
		return
	}
	s.mu.Lock()
	sess, err := s.lookupLocked(r)
	var snap session
	if err == nil {
		if sess.etag != want {
			err = concurrentWrite()
		} else {
			sess.payload, sess.etag, sess.modified = payload, randomToken(), s.opts.Now()
		}
		snap = *sess
	}
	s.mu.Unlock()
	if sess != nil {
		headers(w, &snap) // on 202 and on 412 alike
	}
	if err != nil {
		mxhttp.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	_, err := s.lookupLocked(r)
	if err == nil {
		delete(s.sessions, r.PathValue("id"))
	}
	s.mu.Unlock()
	if err != nil {
		mxhttp.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Len returns the number of sessions held, expired ones not yet dropped
// included.
func (s *Service) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
