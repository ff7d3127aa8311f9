package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/netguard"
	"github.com/matrixos/matrixos/internal/storage"
)

const (
	previewTimeout  = 10 * time.Second
	previewMaxBytes = 2 << 20  // HTML read for a preview
	previewMaxImage = 10 << 20 // og:image fetched for a preview
	previewTTL      = time.Hour
	previewMaxURL   = 2048
	previewMaxValue = 1000 // characters kept of each OpenGraph value
	previewMaxKeys  = 50
	previewAgent    = "Mozilla/5.0 (compatible; MatrixOS URL preview)"
)

type previewEntry struct {
	body    json.RawMessage
	expires time.Time
}

// previewCache keeps recent previews in memory (they are also stored in
// url_previews, for restarts).
type previewCache struct {
	mu      sync.Mutex
	entries map[string]*previewEntry
}

func (c *previewCache) get(u string) json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[u]
	if !ok || time.Now().After(e.expires) {
		return nil
	}
	return e.body
}

func (c *previewCache) put(u string, body json.RawMessage, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= 10000 {
		now := time.Now()
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= 10000 {
			clear(c.entries)
		}
	}
	c.entries[u] = &previewEntry{body: body, expires: expires}
}

var errPreviewForbidden = mxhttp.Forbidden("previews of this address are not allowed")

// Preview returns the OpenGraph data of a web page (fetched at most once an
// hour per URL). Only public addresses are fetched, unless the config allows
// a private range.
func (s *Service) Preview(ctx context.Context, raw string) (json.RawMessage, error) {
	u, err := url.Parse(raw)
	if err != nil || len(raw) > previewMaxURL || u.Host == "" || u.User != nil {
		return nil, mxhttp.InvalidParam("url must be an absolute http or https URL")
	}
	if netguard.CheckURLScheme(u.Scheme) != nil {
		return nil, mxhttp.InvalidParam("url must be an absolute http or https URL")
	}
	u.Fragment, u.RawFragment = "", ""
	key := u.String()
	if body := s.preview.get(key); body != nil {
		return body, nil
	}
	var body string
	var fetched int64
	err = s.db.QueryRow(ctx, `SELECT body, fetched_ts FROM url_previews WHERE url = $1`, key).Scan(&body, &fetched)
	if err == nil && time.Since(time.UnixMilli(fetched)) < previewTTL {
		s.preview.put(key, json.RawMessage(body), time.UnixMilli(fetched).Add(previewTTL))
		return json.RawMessage(body), nil
	}
	og, err := s.fetchPreview(ctx, u)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(og)
	if err != nil {
		return nil, fmt.Errorf("encode preview: %w", err)
	}
	now := time.Now()
	s.preview.put(key, b, now.Add(previewTTL))
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO url_previews (url, fetched_ts, body) VALUES ($1, $2, $3)
			ON CONFLICT (url) DO UPDATE SET fetched_ts = excluded.fetched_ts, body = excluded.body`, key, now.UnixMilli(), string(b))
		return err
	})
	if err != nil {
		s.log.Warn("store URL preview", "err", err)
	}
	return b, nil
}

// fetchError turns a fetch failure into the client's answer.
func fetchError(u *url.URL, err error) error {
	if errors.Is(err, netguard.ErrForbidden) || errors.Is(err, netguard.ErrScheme) {
		return errPreviewForbidden
	}
	return &mxhttp.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: fmt.Sprintf("could not fetch %s", u.Redacted())}
}

// get fetches u through the guarded client.
func (s *Service) get(ctx context.Context, u *url.URL, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, mxhttp.InvalidParam("invalid url")
	}
	req.Header.Set("User-Agent", previewAgent)
	req.Header.Set("Accept", accept)
	resp, err := s.fetcher.Do(req)
	if err != nil {
		s.log.Debug("preview fetch failed", "url", u.Redacted(), "err", err)
		return nil, fetchError(u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, &mxhttp.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Message: fmt.Sprintf("%s answered %d", u.Redacted(), resp.StatusCode)}
	}
	return resp, nil
}

func (s *Service) fetchPreview(ctx context.Context, u *url.URL) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	resp, err := s.get(ctx, u, "text/html,application/xhtml+xml,image/*;q=0.8,*/*;q=0.5")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	final := resp.Request.URL
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	og := map[string]any{}
	switch {
	case strings.HasPrefix(mt, "image/"):
		if err := s.previewImage(ctx, resp, og); err != nil {
			return nil, err
		}
	case mt == "text/html" || mt == "application/xhtml+xml":
		tags, err := parseHTML(io.LimitReader(resp.Body, previewMaxBytes), resp.Header.Get("Content-Type"))
		if err != nil {
			return nil, fetchError(u, err)
		}
		for k, v := range tags {
			og[k] = v
		}
		if img, ok := tags["og:image"]; ok {
			delete(og, "og:image")
			delete(og, "og:image:secure_url")
			delete(og, "og:image:url")
			s.previewImageURL(ctx, final, img, og)
		}
	}
	if _, ok := og["og:url"]; !ok && len(og) > 0 {
		og["og:url"] = final.String()
	}
	for _, k := range []string{"og:image:width", "og:image:height"} {
		if v, ok := og[k].(string); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				og[k] = n
			} else {
				delete(og, k)
			}
		}
	}
	return og, nil
}

// previewImageURL fetches the page's og:image and stores it as media;
// failure just leaves the image out.
func (s *Service) previewImageURL(ctx context.Context, base *url.URL, ref string, og map[string]any) {
	iu, err := base.Parse(ref)
	if err != nil || netguard.CheckURLScheme(iu.Scheme) != nil {
		return
	}
	resp, err := s.get(ctx, iu, "image/*")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if err := s.previewImage(ctx, resp, og); err != nil {
		s.log.Debug("preview image", "url", iu.Redacted(), "err", err)
	}
}

// previewImage stores an image response as media and describes it in og.
func (s *Service) previewImage(ctx context.Context, resp *http.Response, og map[string]any) error {
	limit := min(int64(previewMaxImage), s.opts.MaxUploadBytes)
	if resp.ContentLength > limit {
		return fetchError(resp.Request.URL, errors.New("image too large"))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil || int64(len(data)) > limit {
		return fetchError(resp.Request.URL, errors.New("image unreadable or too large"))
	}
	ctype := http.DetectContentType(data)
	if !strings.HasPrefix(ctype, "image/") {
		return fetchError(resp.Request.URL, errors.New("not an image"))
	}
	m, err := s.Upload(ctx, UploadRequest{ContentType: ctype, Body: bytes.NewReader(data), Limit: limit})
	if err != nil {
		return err
	}
	og["og:image"] = m.URI().String()
	og["og:image:type"] = ctype
	og["matrix:image:size"] = m.Size
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
		og["og:image:width"] = int64(cfg.Width)
		og["og:image:height"] = int64(cfg.Height)
	}
	return nil
}
