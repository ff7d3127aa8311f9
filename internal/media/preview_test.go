package media_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// site is a local web server with an OpenGraph page, a plain page and an
// image; it counts the requests it answers.
type site struct {
	*httptest.Server
	hits atomic.Int64
	png  []byte
}

func newSite(t *testing.T) *site {
	s := &site{png: encodePNG(t, testImage(120, 60))}
	mux := http.NewServeMux()
	mux.HandleFunc("/article", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head>
<title>Fallback title</title>
<meta property="og:title" content="The &amp; Article">
<meta property="og:description" content="What it is about">
<meta property="og:site_name" content="Test Site">
<meta property="og:type" content="article">
<meta property="og:image" content="/img.png">
<meta name="description" content="not this one">
</head><body><p>Hello</p></body></html>`)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
		w.Write([]byte("<html><head><title>  Caf\xe9\n  page </title><meta name=\"description\" content=\"Plain description\"></head><body>x</body></html>"))
	})
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(s.png)
	})
	mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><head><title>Huge</title></head><body>")
		chunk := strings.Repeat("x", 64<<10)
		for range 100 { // 6.4 MB: only the first 2 MiB are read
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func previewURL(target string) string {
	return "/_matrix/client/v1/media/preview_url?url=" + url.QueryEscape(target)
}

func TestPreviewRefusesPrivateAddresses(t *testing.T) {
	s := newSite(t)
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("ssrf")
	targets := []string{
		s.URL + "/article",
		"http://localhost:" + port + "/article",
		"http://[::1]:" + port + "/article",
		"http://127.1:" + port + "/article",
		"http://10.0.0.1/",
		"http://192.168.1.1/",
		"http://172.16.0.1/",
		"http://100.64.0.1/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/latest/meta-data/",
		"http://[fe80::1]/",
		"http://224.0.0.1/",
		"http://0.0.0.0:" + port + "/article",
		"http://[::ffff:127.0.0.1]:" + port + "/article",
	}
	for _, target := range targets {
		r := n.Do(t, "GET", previewURL(target), c.AccessToken, nil)
		if r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Errorf("preview of %s: %d %s, want 403 M_FORBIDDEN", target, r.Status, r.Body)
		}
	}
	for _, target := range []string{"file:///etc/passwd", "gopher://example.com/", "/relative", "http://user:pw@example.com/"} {
		if r := n.Do(t, "GET", previewURL(target), c.AccessToken, nil); r.Status != 400 {
			t.Errorf("preview of %s: %d %s, want 400", target, r.Status, r.Body)
		}
	}
	if r := n.Do(t, "GET", "/_matrix/client/v1/media/preview_url", c.AccessToken, nil); r.Status != 400 || r.ErrCode() != "M_MISSING_PARAM" {
		t.Errorf("preview without url: %d %s", r.Status, r.Body)
	}
	if got := s.hits.Load(); got != 0 {
		t.Fatalf("the loopback server was fetched %d times", got)
	}
}

func TestPreviewAllowedRange(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		s := newSite(t)
		c := n.Register("prev")
		ctx := context.Background()
		p, err := c.GetURLPreview(ctx, s.URL+"/article#section")
		if err != nil {
			t.Fatalf("preview: %v", err)
		}
		if p.Title != "The & Article" || p.Description != "What it is about" || p.SiteName != "Test Site" || p.Type != "article" {
			t.Errorf("OpenGraph fields: %+v", p)
		}
		if p.ImageType != "image/png" || p.ImageWidth != 120 || p.ImageHeight != 60 || int(p.ImageSize) != len(s.png) {
			t.Errorf("image fields: %+v", p)
		}
		img, err := p.ImageURL.Parse()
		if err != nil {
			t.Fatalf("og:image %q: %v", p.ImageURL, err)
		}
		if got := readAll(t, download(t, c, img)); !bytes.Equal(got, s.png) {
			t.Error("og:image content differs from the page's image")
		}
		// Cached: asking again (without the fragment) does not fetch.
		hits := s.hits.Load()
		if _, err := c.GetURLPreview(ctx, s.URL+"/article"); err != nil {
			t.Fatal(err)
		}
		r := n.Do(t, "GET", "/_matrix/media/v3/preview_url?url="+url.QueryEscape(s.URL+"/article")+"&ts=1", c.AccessToken, nil)
		if r.Status != 200 || r.JSON(t)["og:title"] != "The & Article" {
			t.Errorf("legacy preview: %d %s", r.Status, r.Body)
		}
		if got := s.hits.Load(); got != hits {
			t.Errorf("cached preview fetched again (%d requests)", got-hits)
		}

		// <title> and <meta name=description> fill in, in the page's charset.
		p, err = c.GetURLPreview(ctx, s.URL+"/plain")
		if err != nil {
			t.Fatal(err)
		}
		if p.Title != "Café page" || p.Description != "Plain description" || p.ImageURL != "" {
			t.Errorf("fallback fields: %+v", p)
		}
		// An image URL previews as the image.
		p, err = c.GetURLPreview(ctx, s.URL+"/img.png")
		if err != nil {
			t.Fatal(err)
		}
		if p.ImageURL == "" || p.ImageWidth != 120 {
			t.Errorf("image preview: %+v", p)
		}
		// Large pages are cut off, not refused.
		if p, err = c.GetURLPreview(ctx, s.URL+"/huge"); err != nil || p.Title != "Huge" {
			t.Errorf("huge page: %+v, %v", p, err)
		}
		// Redirects are checked again: metadata stays out of reach.
		r = n.Do(t, "GET", previewURL(s.URL+"/to-metadata"), c.AccessToken, nil)
		if r.Status != 403 {
			t.Errorf("redirect to metadata: %d %s", r.Status, r.Body)
		}
		// Previews need an access token.
		if r := n.Do(t, "GET", previewURL(s.URL+"/article"), "", nil); r.Status != 401 {
			t.Errorf("preview without token: %d", r.Status)
		}
	}, func(c *config.Config) { c.AllowPrivateNetworks = []string{"127.0.0.0/8"} })
}
