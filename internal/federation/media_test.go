package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

// countingFederation is the node's federation client, counting requests.
type countingFederation struct {
	*federation.Client
	requests atomic.Int32
}

func (c *countingFederation) MakeFullRequest(ctx context.Context, params federation.RequestParams) ([]byte, *http.Response, error) {
	c.requests.Add(1)
	return c.Client.MakeFullRequest(ctx, params)
}

func pngImage(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRemoteMedia: a user on A (SQLite, then PostgreSQL) downloads media of B through A's
// authenticated media API: with its type and file name, fetched from B once
// however many ask at once, then served from A's store even with B gone;
// a thumbnail of B's image; unknown media is 404. The deprecated
// unauthenticated path serves only what A already kept, and A's admin can
// quarantine A's copy with the media of a room that links to it.
func TestRemoteMedia(t *testing.T) {
	for _, engine := range testnode.Engines {
		t.Run(string(engine), func(t *testing.T) {
			ctx := context.Background()
			ca := testnode.NewCA(t)
			a := testnode.StartFederating(t, engine, ca, func(c *config.Config) { c.MediaLegacyNoAuth = true })
			b := testnode.StartFederating(t, testnode.SQLite, ca)
			counter := &countingFederation{Client: a.Federation.Client}
			a.Media.UseFederation(counter)
			alice := a.Register("alice")
			bob := b.Register("bob")
			content := []byte("a file that lives on B")
			up, err := bob.UploadBytesWithName(ctx, content, "text/plain", "notes.txt")
			if err != nil {
				t.Fatal(err)
			}
			img, err := bob.UploadBytesWithName(ctx, pngImage(t, 320, 240), "image/png", "picture.png")
			if err != nil {
				t.Fatal(err)
			}
			path := "/_matrix/client/v1/media/download/" + up.ContentURI.Homeserver + "/" + up.ContentURI.FileID

			// The deprecated unauthenticated path does not make A fetch.
			legacy := "/_matrix/media/v3/download/" + up.ContentURI.Homeserver + "/" + up.ContentURI.FileID
			a.Do(t, "GET", legacy, "", nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
			if n := counter.requests.Load(); n != 0 {
				t.Fatalf("an unauthenticated legacy download made %d requests to B", n)
			}

			var wg sync.WaitGroup
			bodies := make([][]byte, 6)
			for i := range bodies {
				wg.Go(func() {
					r := testnode.Call(t, alice, "GET", path, nil)
					if r.Status != http.StatusOK {
						t.Errorf("download %d: %d %s", i, r.Status, r.Body)
					}
					bodies[i] = r.Body
					if _, params, _ := mime.ParseMediaType(r.Header.Get("Content-Disposition")); params["filename"] != "notes.txt" {
						t.Errorf("download %d: Content-Disposition %q", i, r.Header.Get("Content-Disposition"))
					}
					if ct := r.Header.Get("Content-Type"); ct != "text/plain" {
						t.Errorf("download %d: Content-Type %q", i, ct)
					}
				})
			}
			wg.Wait()
			for i, body := range bodies {
				if !bytes.Equal(body, content) {
					t.Fatalf("download %d: %q, want %q", i, body, content)
				}
			}
			if n := counter.requests.Load(); n != 1 {
				t.Fatalf("%d concurrent downloads made %d requests to B, want 1", len(bodies), n)
			}

			thumb, err := alice.DownloadThumbnail(ctx, img.ContentURI, 32, 32)
			if err != nil {
				t.Fatalf("thumbnail of B's image: %v", err)
			}
			defer thumb.Body.Close()
			if ct := thumb.Header.Get("Content-Type"); ct != "image/png" && ct != "image/jpeg" {
				t.Fatalf("thumbnail of B's image: Content-Type %q", ct)
			}
			if _, _, err := image.Decode(thumb.Body); err != nil {
				t.Fatalf("thumbnail of B's image does not decode: %v", err)
			}

			missing := id.ContentURI{Homeserver: b.Config.ServerName, FileID: "nothingHere"}
			_, err = alice.DownloadBytes(ctx, missing)
			testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)

			// Once kept, it is served there too.
			if r := a.Do(t, "GET", legacy, "", nil); r.Status != http.StatusOK || !bytes.Equal(r.Body, content) {
				t.Fatalf("legacy download of kept media: %d %q", r.Status, r.Body)
			}

			b.Stop()
			if got, err := alice.DownloadBytes(ctx, up.ContentURI); err != nil || !bytes.Equal(got, content) {
				t.Fatalf("download after B stopped: %q, %v", got, err)
			}
			_, err = alice.DownloadBytes(ctx, id.ContentURI{Homeserver: b.Config.ServerName, FileID: "neverFetched"})
			testnode.WantErr(t, err, "M_UNKNOWN", http.StatusBadGateway)

			// A's admin quarantines the media of a room that links to B's
			// file: A's copy is no longer served.
			admin := a.RegisterAdmin("admin")
			room := testnode.CreateRoom(t, admin, &mautrix.ReqCreateRoom{})
			if _, err := admin.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{"msgtype": "m.file", "body": "notes.txt", "url": up.ContentURI.String()}); err != nil {
				t.Fatal(err)
			}
			r := testnode.Call(t, admin, "POST", "/_synapse/admin/v1/room/"+url.PathEscape(string(room))+"/media/quarantine", map[string]any{}).OK(t)
			if r["num_quarantined"] != float64(1) {
				t.Fatalf("quarantine of the room's media: %v", r)
			}
			_, err = alice.DownloadBytes(ctx, up.ContentURI)
			testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
		})
	}
}

// TestRemoteMediaTooLarge: media of B larger than A's max_upload_bytes is
// refused with the spec's 502 M_TOO_LARGE and not stored.
func TestRemoteMediaTooLarge(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca, func(c *config.Config) { c.MaxUploadBytes = 1024 })
	b := testnode.StartFederating(t, testnode.SQLite, ca)
	alice := a.Register("alice")
	bob := b.Register("bob")
	up, err := bob.UploadBytes(ctx, bytes.Repeat([]byte("x"), 4096), "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.DownloadBytes(ctx, up.ContentURI)
	testnode.WantErr(t, err, "M_TOO_LARGE", http.StatusBadGateway)
	if m, err := a.Media.Get(ctx, up.ContentURI.Homeserver, up.ContentURI.FileID); err != nil || m != nil {
		t.Fatalf("A stored B's media it refused: %+v, %v", m, err)
	}
}

// TestFederationMediaEndpoints: B's federation download and thumbnail
// answer multipart/mixed with an empty JSON object and the content, and
// refuse bad input with the spec's errors.
func TestFederationMediaEndpoints(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	bob := b.Register("bob")
	up, err := bob.UploadBytesWithName(ctx, []byte("hello"), "text/plain", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	img, err := bob.UploadBytes(ctx, pngImage(t, 100, 100), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	get := func(kind, mediaID string, q url.Values) (*http.Response, []byte, error) {
		_, resp, err := a.Federation.Client.MakeFullRequest(ctx, federation.RequestParams{
			ServerName: b.Config.ServerName, Method: "GET", Path: federation.URLPath{"v1", "media", kind, mediaID},
			Query: q, Authenticate: true, DontReadBody: true,
		})
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	parts := func(resp *http.Response, body []byte) (meta map[string]any, header map[string][]string, content []byte) {
		t.Helper()
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/mixed" {
			t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		p, err := mr.NextPart()
		if err != nil || p.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("metadata part: %v %v", p, err)
		}
		if err := json.NewDecoder(p).Decode(&meta); err != nil {
			t.Fatal(err)
		}
		p, err = mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		content, _ = io.ReadAll(p)
		if _, err := mr.NextPart(); err != io.EOF {
			t.Fatalf("a third part: %v", err)
		}
		return meta, p.Header, content
	}

	resp, body, err := get("download", up.ContentURI.FileID, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta, header, content := parts(resp, body)
	if len(meta) != 0 || string(content) != "hello" || header["Content-Type"][0] != "text/plain" {
		t.Fatalf("download: %v %v %q", meta, header, content)
	}
	if _, params, _ := mime.ParseMediaType(header["Content-Disposition"][0]); params["filename"] != "hello.txt" {
		t.Fatalf("download's Content-Disposition: %v", header["Content-Disposition"])
	}
	resp, body, err = get("thumbnail", img.ContentURI.FileID, url.Values{"width": {"32"}, "height": {"32"}, "method": {"crop"}})
	if err != nil {
		t.Fatal(err)
	}
	_, header, content = parts(resp, body)
	if _, _, err := image.Decode(bytes.NewReader(content)); err != nil {
		t.Fatalf("thumbnail (%v) does not decode: %v", header, err)
	}

	for _, tt := range []struct {
		name, kind, mediaID string
		query               url.Values
		status              int
		code                string
	}{
		{"unknown media", "download", "nothingHere", nil, 404, "M_NOT_FOUND"},
		{"bad timeout_ms", "download", up.ContentURI.FileID, url.Values{"timeout_ms": {"soon"}}, 400, "M_INVALID_PARAM"},
		{"thumbnail without width", "thumbnail", img.ContentURI.FileID, url.Values{"height": {"32"}}, 400, "M_MISSING_PARAM"},
		{"thumbnail bad method", "thumbnail", img.ContentURI.FileID, url.Values{"width": {"32"}, "height": {"32"}, "method": {"stretch"}}, 400, "M_INVALID_PARAM"},
		{"thumbnail of unknown media", "thumbnail", "nothingHere", url.Values{"width": {"32"}, "height": {"32"}}, 404, "M_NOT_FOUND"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := get(tt.kind, tt.mediaID, tt.query)
			if status, code := fedStatus(err); status != tt.status || code != tt.code {
				t.Fatalf("got %d %s (%v), want %d %s", status, code, err, tt.status, tt.code)
			}
		})
	}
}

// oldMediaServer makes node B look, to A's media repository, like a
// server from before authenticated media (spec v1.11): A's federation
// media requests go to a path B does not serve (B answers 404
// M_UNRECOGNIZED, as such a server does), and the deprecated
// /_matrix/media/v3/download reaches B's own (on its client listener).
type oldMediaServer struct {
	*federation.Client
	clientURL string
	legacy    atomic.Int32
}

func (f *oldMediaServer) MakeFullRequest(ctx context.Context, params federation.RequestParams) ([]byte, *http.Response, error) {
	switch p := params.Path.(type) {
	case federation.URLPath:
		if len(p) > 1 && p[1] == "media" {
			params.Path = federation.URLPath{"v1", "no_such_media_endpoint"}
		}
	case mautrix.BaseURLPath:
		f.legacy.Add(1)
		u := f.clientURL
		for _, part := range p {
			u += "/" + url.PathEscape(part.(string))
		}
		req, err := http.NewRequestWithContext(ctx, params.Method, u+"?"+params.Query.Encode(), nil)
		if err != nil {
			return nil, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode >= 300 {
			return nil, resp, mautrix.HTTPError{Request: req, Response: resp, Message: resp.Status}
		}
		return nil, resp, err
	}
	return f.Client.MakeFullRequest(ctx, params)
}

// TestRemoteMediaFromOldServer: a server that answers the authenticated
// federation download as an unknown endpoint (404 M_UNRECOGNIZED) is asked
// again through the deprecated GET /_matrix/media/v3/download, and its
// answer (the content itself) is served with its type and file name
// (Complement's TestMediaWithoutFileName, whose server is such a one).
func TestRemoteMediaFromOldServer(t *testing.T) {
	ctx := context.Background()
	ca := testnode.NewCA(t)
	a := testnode.StartFederating(t, testnode.SQLite, ca)
	b := testnode.StartFederating(t, testnode.SQLite, ca, func(c *config.Config) { c.MediaLegacyNoAuth = true })
	old := &oldMediaServer{Client: a.Federation.Client, clientURL: b.URL}
	a.Media.UseFederation(old)
	alice, bob := a.Register("alice"), b.Register("bob")
	content := []byte("a file on a server without authenticated media")
	up, err := bob.UploadBytesWithName(ctx, content, "text/plain", "old.txt")
	if err != nil {
		t.Fatal(err)
	}
	r := testnode.Call(t, alice, "GET", "/_matrix/client/v1/media/download/"+up.ContentURI.Homeserver+"/"+up.ContentURI.FileID, nil)
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, content) {
		t.Fatalf("download from the old server: %d %q", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if _, params, _ := mime.ParseMediaType(r.Header.Get("Content-Disposition")); params["filename"] != "old.txt" {
		t.Errorf("Content-Disposition %q, want old.txt", r.Header.Get("Content-Disposition"))
	}
	if n := old.legacy.Load(); n != 1 {
		t.Errorf("%d deprecated downloads, want 1", n)
	}
	missing := id.ContentURI{Homeserver: b.Config.ServerName, FileID: "nothingHere"}
	_, err = alice.DownloadBytes(ctx, missing)
	testnode.WantErr(t, err, "M_NOT_FOUND", http.StatusNotFound)
}
