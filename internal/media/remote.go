package media

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/remote"
	"github.com/matrixos/matrixos/internal/storage"
)

// Federation is what the media repository asks other servers through: the
// mautrix federation client, which node hands over while federation is on.
type Federation interface {
	MakeFullRequest(ctx context.Context, params federation.RequestParams) ([]byte, *http.Response, error)
}

// Remote media fetches.
const (
	// remoteFetchTimeout bounds fetching one remote media item.
	remoteFetchTimeout = 2 * time.Minute
	// remoteAnswerTTL is how long a remote server's "not found" is kept
	// (found media is kept in the store).
	remoteAnswerTTL = time.Minute
	// remoteAnswersKept bounds the fetches remembered at once.
	remoteAnswersKept = 10000
	// maxMetadataBytes bounds the metadata part of a federation download.
	maxMetadataBytes = 64 << 10
)

// remoteMedia fetches other servers' media.
type remoteMedia struct {
	fed     Federation
	fetches *remote.Cache[string, struct{}]
}

// UseFederation makes other servers' media reachable through the
// authenticated download and thumbnail endpoints: an mxc URI of another
// server is fetched from it once (GET /_matrix/federation/v1/media/
// download), at most MaxUploadBytes, and kept in the store; concurrent
// requests for one item share one fetch. Without it, other servers'
// media is not found.
func (s *Service) UseFederation(f Federation) {
	s.remote = &remoteMedia{fed: f, fetches: remote.NewCache[string, struct{}](remoteAnswerTTL, remoteAnswersKept)}
}

// mediaIDRE is the spec's grammar for media IDs.
var mediaIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// remoteLookup finds another server's media in the store, fetching it
// first, when fetch allows, if it is not there.
func (s *Service) remoteLookup(ctx context.Context, server, mediaID string, wait time.Duration, fetch bool) (*Media, error) {
	if config.ValidServerName(server) != nil || !mediaIDRE.MatchString(mediaID) {
		return nil, mxhttp.NotFound("media not found")
	}
	m, err := s.Get(ctx, server, mediaID)
	if err != nil {
		return nil, err
	}
	if m == nil && s.remote != nil && fetch {
		_, err := s.remote.fetches.Get(ctx, server+"/"+mediaID, remoteFetchTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.fetchRemote(ctx, server, mediaID, wait)
		})
		if err != nil {
			return nil, err
		}
		if m, err = s.Get(ctx, server, mediaID); err != nil {
			return nil, err
		}
	}
	if m == nil || m.Pending() || m.Quarantined {
		return nil, mxhttp.NotFound("media not found")
	}
	return m, nil
}

// fetchRemote downloads a media item from its server and stores it.
func (s *Service) fetchRemote(ctx context.Context, server, mediaID string, wait time.Duration) error {
	_, resp, err := s.remote.fed.MakeFullRequest(ctx, federation.RequestParams{
		ServerName:   server,
		Method:       http.MethodGet,
		Path:         federation.URLPath{"v1", "media", "download", mediaID},
		Query:        url.Values{"timeout_ms": {strconv.FormatInt(wait.Milliseconds(), 10)}},
		Authenticate: true,
		DontReadBody: true,
	})
	var content *remoteContent
	switch {
	case endpointUnknown(err):
		content, err = s.fetchLegacy(ctx, server, mediaID, wait)
	case err != nil:
		return remoteMediaError(server, err)
	default:
		defer resp.Body.Close()
		content, err = s.readDownload(ctx, server, resp)
	}
	if err != nil {
		return err
	}
	defer content.Close()
	return s.storeRemote(ctx, server, mediaID, content)
}

// endpointUnknown reports whether a server answered a federation media
// request as one that does not serve the authenticated endpoints (spec
// v1.11) would: 405, or 404 or 400 with M_UNRECOGNIZED or no Matrix error
// at all. The spec has such a server asked again through the deprecated
// GET /_matrix/media/v3/download.
func endpointUnknown(err error) bool {
	he, ok := errors.AsType[mautrix.HTTPError](err)
	if !ok || he.Response == nil {
		return false
	}
	code := ""
	if he.RespError != nil {
		code = he.RespError.ErrCode
	}
	switch he.Response.StatusCode {
	case http.StatusMethodNotAllowed:
		return true
	case http.StatusNotFound, http.StatusBadRequest:
		return code == "" || code == "M_UNRECOGNIZED"
	}
	return false
}

// fetchLegacy downloads a media item through the deprecated
// unauthenticated GET /_matrix/media/v3/download of its server, whose
// answer is the content itself.
func (s *Service) fetchLegacy(ctx context.Context, server, mediaID string, wait time.Duration) (*remoteContent, error) {
	_, resp, err := s.remote.fed.MakeFullRequest(ctx, federation.RequestParams{
		ServerName: server,
		Method:     http.MethodGet,
		Path:       mautrix.BaseURLPath{"_matrix", "media", "v3", "download", server, mediaID},
		Query: url.Values{"timeout_ms": {strconv.FormatInt(wait.Milliseconds(), 10)},
			"allow_remote": {"false"}, "allow_redirect": {"false"}},
		DontReadBody: true,
	})
	if err != nil {
		return nil, remoteMediaError(server, err)
	}
	return &remoteContent{
		contentType: normalizeContentType(resp.Header.Get("Content-Type")),
		filename:    dispositionFilename(resp.Header.Get("Content-Disposition")),
		body:        resp.Body,
		closer:      resp.Body,
	}, nil
}

// remoteMediaError is remote.Error, keeping the remote's media answers
// that mean something to the client: not uploaded yet, too large.
func remoteMediaError(server string, err error) error {
	if he, ok := errors.AsType[mautrix.HTTPError](err); ok && he.RespError != nil {
		switch he.RespError.ErrCode {
		case "M_NOT_YET_UPLOADED":
			return mxhttp.NotYetUploaded("%s has not received the media yet", server)
		case "M_TOO_LARGE":
			return tooLargeRemote(server)
		}
	}
	return remote.Error(server, err)
}

// tooLargeRemote is the spec's 502 M_TOO_LARGE for remote content too
// large to serve.
func tooLargeRemote(server string) error {
	return &mxhttp.Error{Status: http.StatusBadGateway, Code: "M_TOO_LARGE", Message: "the media of " + server + " is too large to serve"}
}

// remoteContent is the content part of a federation download.
type remoteContent struct {
	contentType string
	filename    string
	body        io.Reader
	closer      io.Closer // what body reads from, when it must be closed
}

func (c *remoteContent) Close() error {
	if c.closer == nil {
		return nil
	}
	return c.closer.Close()
}

// readDownload reads the multipart/mixed answer of a federation download
// up to its content: the metadata part (a JSON object) first, then the
// content or a Location to fetch it from.
func (s *Service) readDownload(ctx context.Context, server string, resp *http.Response) (*remoteContent, error) {
	content, location, err := parseDownload(resp.Header.Get("Content-Type"), resp.Body)
	if err != nil {
		return nil, remote.BadGateway("%s: %v", server, err)
	}
	if location == "" {
		return content, nil
	}
	return s.followLocation(ctx, server, location)
}

// parseDownload reads a federation download body: the metadata part,
// which must be a JSON object, then the content part, returned with its
// type and file name, or the URL its Location header names.
func parseDownload(contentType string, body io.Reader) (*remoteContent, string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, "", errors.New("the download is not multipart/mixed with a boundary")
	}
	mr := multipart.NewReader(body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		return nil, "", errors.New("the download has no metadata part")
	}
	var metadata map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(meta, maxMetadataBytes)).Decode(&metadata); err != nil || metadata == nil {
		return nil, "", errors.New("the download's metadata is not a JSON object")
	}
	part, err := mr.NextPart()
	if err != nil {
		return nil, "", errors.New("the download has no content part")
	}
	if loc := part.Header.Get("Location"); loc != "" {
		u, err := url.Parse(loc)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, "", errors.New("the download's Location is not an http(s) URL")
		}
		return nil, u.String(), nil
	}
	return &remoteContent{
		contentType: normalizeContentType(part.Header.Get("Content-Type")),
		filename:    dispositionFilename(part.Header.Get("Content-Disposition")),
		body:        part,
	}, "", nil
}

// followLocation fetches content a federation download redirected to,
// through the guard that keeps outbound requests off private networks.
func (s *Service) followLocation(ctx context.Context, server, location string) (*remoteContent, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, remote.BadGateway("%s: bad Location: %v", server, err)
	}
	resp, err := s.locationClient.Do(req)
	if err != nil {
		return nil, remote.Error(server, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, remote.BadGateway("the Location %s gave for its media answered HTTP %d", server, resp.StatusCode)
	}
	return &remoteContent{
		contentType: normalizeContentType(resp.Header.Get("Content-Type")),
		filename:    dispositionFilename(resp.Header.Get("Content-Disposition")),
		body:        resp.Body,
		closer:      resp.Body,
	}, nil
}

// dispositionFilename is the file name of a Content-Disposition header,
// or "" when it has none this server would accept from an upload.
func dispositionFilename(cd string) string {
	_, params, err := mime.ParseMediaType(cd)
	if err != nil || checkFilename(params["filename"]) != nil {
		return ""
	}
	return params["filename"]
}

// storeRemote stores fetched content as the remote media item.
func (s *Service) storeRemote(ctx context.Context, server, mediaID string, c *remoteContent) error {
	body := &readErrs{r: c.body}
	req := UploadRequest{ContentType: c.contentType, Filename: c.filename, Body: body}
	err := s.put(ctx, &req, func(b Blob) error {
		return s.db.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO media (`+mediaColumns+`) VALUES ($1, $2, '', $3, $4, $5, $6, $7, 0, FALSE, '')
				ON CONFLICT (server, media_id) DO NOTHING`,
				server, mediaID, c.contentType, c.filename, b.Size, b.SHA256, time.Now().UnixMilli())
			return err
		})
	})
	if me, ok := errors.AsType[*mxhttp.Error](err); ok && me.Code == "M_TOO_LARGE" {
		return tooLargeRemote(server)
	}
	if err != nil && body.err != nil {
		return remote.BadGateway("%s: reading its media: %v", server, body.err)
	}
	return err
}

// readErrs remembers the error its reader failed with (io.EOF aside), to
// tell a broken download from a failure to store it.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
