package media

import (
	"context"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Routes registers the media endpoints on mux.
func (s *Service) Routes(mux *http.ServeMux) {
	const v1 = "/_matrix/client/v1/media"
	const legacy = "/_matrix/media/v3"
	mux.HandleFunc("GET "+v1+"/config", s.acc.Auth(s.getConfig))
	mux.HandleFunc("GET "+v1+"/download/{serverName}/{mediaId}", s.acc.Auth(s.getDownload))
	mux.HandleFunc("GET "+v1+"/download/{serverName}/{mediaId}/{fileName}", s.acc.Auth(s.getDownload))
	mux.HandleFunc("GET "+v1+"/thumbnail/{serverName}/{mediaId}", s.acc.Auth(s.getThumbnail))
	mux.HandleFunc("GET "+v1+"/preview_url", s.acc.Auth(s.getPreviewURL))

	mux.HandleFunc("GET "+legacy+"/config", s.acc.Auth(s.getConfig))
	mux.HandleFunc("POST "+legacy+"/upload", s.acc.Auth(s.postUpload))
	mux.HandleFunc("PUT "+legacy+"/upload/{serverName}/{mediaId}", s.acc.Auth(s.putUpload))
	mux.HandleFunc("POST /_matrix/media/v1/create", s.acc.Auth(s.postCreate))
	mux.HandleFunc("GET "+legacy+"/download/{serverName}/{mediaId}", s.legacy(s.getDownload))
	mux.HandleFunc("GET "+legacy+"/download/{serverName}/{mediaId}/{fileName}", s.legacy(s.getDownload))
	mux.HandleFunc("GET "+legacy+"/thumbnail/{serverName}/{mediaId}", s.legacy(s.getThumbnail))
	mux.HandleFunc("GET "+legacy+"/preview_url", s.acc.Auth(s.getPreviewURL))
}

// legacy wraps the deprecated unauthenticated endpoints: they serve anyone
// when LegacyUnauthenticated is set, and otherwise only requests that carry
// a valid access token (others get 404 M_NOT_FOUND, as the spec allows for
// servers that froze unauthenticated media).
func (s *Service) legacy(h accounts.AuthedHandler) http.HandlerFunc {
	return mxhttp.Handle(func(w http.ResponseWriter, r *http.Request) (any, error) {
		var sess *accounts.Session
		if tok := mxhttp.AccessToken(r); tok != "" {
			var err error
			if sess, err = s.acc.AuthenticateRequest(r); err != nil {
				return nil, err
			}
		}
		if sess == nil && !s.opts.LegacyUnauthenticated {
			return nil, mxhttp.NotFound("unauthenticated media access is disabled; use /_matrix/client/v1/media")
		}
		return h(w, r, sess)
	})
}

func (s *Service) getConfig(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	return map[string]any{"m.upload.size": s.opts.MaxUploadBytes}, nil
}

// uploadRequest reads the upload parameters of r.
func (s *Service) uploadRequest(r *http.Request, sess *accounts.Session) (UploadRequest, error) {
	if sess.IsGuest {
		return UploadRequest{}, mxhttp.GuestAccessDeny("guests may not upload media")
	}
	if r.ContentLength > s.opts.MaxUploadBytes {
		return UploadRequest{}, mxhttp.TooLarge("cannot upload files larger than %d bytes", s.opts.MaxUploadBytes)
	}
	filename := r.URL.Query().Get("filename")
	if err := checkFilename(filename); err != nil {
		return UploadRequest{}, err
	}
	return UploadRequest{
		User:        sess.UserID,
		ContentType: normalizeContentType(r.Header.Get("Content-Type")),
		Filename:    filename,
		Body:        r.Body,
		Exempt:      sess.IsAdmin,
	}, nil
}

func checkFilename(name string) error {
	if len(name) > 1024 || !utf8.ValidString(name) {
		return mxhttp.InvalidParam("invalid filename")
	}
	for _, c := range name {
		if unicode.IsControl(c) {
			return mxhttp.InvalidParam("filename must not contain control characters")
		}
	}
	return nil
}

// normalizeContentType returns the upload's content type in canonical form,
// or application/octet-stream when it is missing or malformed.
func normalizeContentType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return "application/octet-stream"
	}
	if out := mime.FormatMediaType(mt, params); out != "" {
		return out
	}
	return mt
}

func (s *Service) postUpload(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	req, err := s.uploadRequest(r, sess)
	if err != nil {
		return nil, err
	}
	m, err := s.Upload(r.Context(), req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"content_uri": m.URI().String()}, nil
}

func (s *Service) postCreate(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	if sess.IsGuest {
		return nil, mxhttp.GuestAccessDeny("guests may not upload media")
	}
	m, err := s.Create(r.Context(), sess.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"content_uri": m.URI().String(), "unused_expires_at": m.ExpiresTS}, nil
}

func (s *Service) putUpload(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	server, mediaID := r.PathValue("serverName"), r.PathValue("mediaId")
	if server != s.opts.ServerName {
		return nil, mxhttp.NotFound("unknown media ID")
	}
	req, err := s.uploadRequest(r, sess)
	if err != nil {
		return nil, err
	}
	if err := s.UploadTo(r.Context(), server, mediaID, req); err != nil {
		return nil, err
	}
	return mxhttp.Empty, nil
}

const (
	defaultWait = 20 * time.Second
	maxWait     = 60 * time.Second
)

// lookup finds servable media named by the request's path: this server's
// (see lookupLocal), or another server's, fetched from it over federation
// and kept (see remoteLookup) when sess, the requester, is known: a
// request without an access token (the deprecated unauthenticated paths)
// gets only remote media already kept.
func (s *Service) lookup(r *http.Request, sess *accounts.Session) (*Media, error) {
	server, mediaID := r.PathValue("serverName"), r.PathValue("mediaId")
	wait, err := waitParam(r)
	if err != nil {
		return nil, err
	}
	if server != s.opts.ServerName {
		return s.remoteLookup(r.Context(), server, mediaID, wait, sess != nil)
	}
	return s.lookupLocal(r.Context(), mediaID, wait)
}

// waitParam reads timeout_ms: how long to wait for a pending upload.
func waitParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("timeout_ms")
	if v == "" {
		return defaultWait, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return 0, mxhttp.InvalidParam("timeout_ms must be a non-negative integer")
	}
	return min(time.Duration(ms)*time.Millisecond, maxWait), nil
}

// lookupLocal finds servable media of this server, waiting up to wait
// for a pending upload.
func (s *Service) lookupLocal(ctx context.Context, mediaID string, wait time.Duration) (*Media, error) {
	server := s.opts.ServerName
	m, err := s.Get(ctx, server, mediaID)
	if err != nil {
		return nil, err
	}
	if m != nil && m.Pending() && m.ExpiresTS > time.Now().UnixMilli() {
		ch, release := s.waitUploaded(mediaID)
		defer release()
		// Look again now that an upload would wake us.
		if m, err = s.Get(ctx, server, mediaID); err != nil {
			return nil, err
		}
		if m != nil && m.Pending() {
			t := time.NewTimer(wait)
			select {
			case <-ch:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			if m, err = s.Get(ctx, server, mediaID); err != nil {
				return nil, err
			}
			if m != nil && m.Pending() && m.ExpiresTS > time.Now().UnixMilli() {
				return nil, mxhttp.NotYetUploaded("the media has not been uploaded yet")
			}
		}
	}
	if m == nil || m.Pending() || m.Quarantined {
		return nil, mxhttp.NotFound("media not found")
	}
	return m, nil
}

func (s *Service) getDownload(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	m, err := s.lookup(r, sess)
	if err != nil {
		return nil, err
	}
	rd, err := s.Open(m)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	name := m.Filename
	if n := r.PathValue("fileName"); n != "" {
		name = n
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", m.ContentType)
	h.Set("Content-Disposition", contentDisposition(dispositionType(m.ContentType), name))
	h.Set("Cache-Control", "private, max-age=86400")
	http.ServeContent(w, r, "", time.UnixMilli(m.CreatedTS), rd)
	return nil, nil
}

func (s *Service) getThumbnail(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	width, height, method, err := thumbnailParams(r)
	if err != nil {
		return nil, err
	}
	m, err := s.lookup(r, sess)
	if err != nil {
		return nil, err
	}
	t, rd, err := s.openThumbnail(r.Context(), m, width, height, method)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", t.ContentType)
	h.Set("Content-Disposition", contentDisposition("inline", thumbnailName(t)))
	h.Set("Cache-Control", "private, max-age=86400")
	http.ServeContent(w, r, "", time.UnixMilli(m.CreatedTS), rd)
	return nil, nil
}

// thumbnailParams reads the size and method a thumbnail request asks for.
func thumbnailParams(r *http.Request) (width, height int, method string, err error) {
	q := r.URL.Query()
	if width, err = dimension(q.Get("width"), "width"); err != nil {
		return 0, 0, "", err
	}
	if height, err = dimension(q.Get("height"), "height"); err != nil {
		return 0, 0, "", err
	}
	method = q.Get("method")
	switch method {
	case "":
		method = "scale"
	case "crop", "scale":
	default:
		return 0, 0, "", mxhttp.InvalidParam("method must be crop or scale")
	}
	if v := q.Get("animated"); v != "" && v != "true" && v != "false" {
		return 0, 0, "", mxhttp.InvalidParam("animated must be true or false")
	}
	return width, height, method, nil
}

// openThumbnail makes, or finds, the thumbnail of m and opens its content.
func (s *Service) openThumbnail(ctx context.Context, m *Media, width, height int, method string) (*Thumb, Reader, error) {
	t, err := s.Thumbnail(ctx, m, width, height, method)
	if err != nil {
		return nil, nil, err
	}
	rd, err := s.store.Open(t.SHA256)
	if err != nil {
		return nil, nil, err
	}
	return t, rd, nil
}

// thumbnailName is the file name a thumbnail is served under.
func thumbnailName(t *Thumb) string {
	if t.ContentType == "image/jpeg" {
		return "thumbnail.jpg"
	}
	return "thumbnail.png"
}

func dimension(v, name string) (int, error) {
	if v == "" {
		return 0, mxhttp.MissingParam("missing %s", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 10000 {
		return 0, mxhttp.InvalidParam("%s must be a positive integer", name)
	}
	return n, nil
}

func (s *Service) getPreviewURL(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	raw := r.URL.Query().Get("url")
	if raw == "" {
		return nil, mxhttp.MissingParam("missing url")
	}
	return s.Preview(r.Context(), raw)
}

// securityHeaders keep downloaded content from running on the server's
// origin: scripts are off and the browser must not guess the type.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
}

// inlineTypes may be shown inline: the spec's list of types that cannot
// run script on the server's origin.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// dispositionType is how content of contentType is served: "inline"
// when it is one of inlineTypes, else "attachment".
func dispositionType(contentType string) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && inlineTypes[strings.ToLower(mt)] {
		return "inline"
	}
	return "attachment"
}

// contentDisposition renders a Content-Disposition header with the file
// name both as a plain ASCII fallback and, exactly, as RFC 8187 filename*.
func contentDisposition(disposition, name string) string {
	if name == "" {
		return disposition
	}
	var ascii, ext strings.Builder
	for _, c := range name {
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '%' {
			ascii.WriteRune(c)
		} else {
			ascii.WriteByte('_')
		}
	}
	for _, b := range []byte(name) {
		if isAttrChar(b) {
			ext.WriteByte(b)
		} else {
			ext.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(b)|0x100, 16)[1:]))
		}
	}
	return disposition + `; filename="` + ascii.String() + `"; filename*=utf-8''` + ext.String()
}

// isAttrChar reports whether b may appear unencoded in an RFC 8187 value.
func isAttrChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", b) >= 0
}
