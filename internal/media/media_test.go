package media_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/config"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestConfig(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.MaxUploadBytes = 12345 })
	c := n.Register("cfg")
	cfg, err := c.GetMediaConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UploadSize != 12345 {
		t.Errorf("m.upload.size = %d", cfg.UploadSize)
	}
	if r := n.Do(t, "GET", "/_matrix/media/v3/config", c.AccessToken, nil); r.Status != 200 || r.JSON(t)["m.upload.size"] != float64(12345) {
		t.Errorf("legacy config: %d %s", r.Status, r.Body)
	}
	if r := n.Do(t, "GET", "/_matrix/client/v1/media/config", "", nil); r.Status != 401 {
		t.Errorf("config without token: %d", r.Status)
	}
}

func TestImagesUploadDownloadThumbnail(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		c := n.Register("img")
		src := testImage(640, 480)
		cases := []struct {
			name, ctype string
			data        []byte
			w, h        int
			thumbType   string
		}{
			{"photo.png", "image/png", encodePNG(t, src), 640, 480, "image/png"},
			{"photo.jpg", "image/jpeg", encodeJPEG(t, src), 640, 480, "image/jpeg"},
			{"anim.gif", "image/gif", encodeGIF(t, src), 640, 480, "image/png"},
			{"pic.webp", "image/webp", encodeWebP(64, 48), 64, 48, "image/jpeg"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				uri := upload(t, c, tc.data, tc.ctype, tc.name)
				if uri.Homeserver != "localhost" || uri.FileID == "" {
					t.Fatalf("content URI %s", uri)
				}
				resp := download(t, c, uri)
				got := readAll(t, resp)
				if !bytes.Equal(got, tc.data) {
					t.Fatalf("downloaded %d bytes, uploaded %d", len(got), len(tc.data))
				}
				h := resp.Header
				if h.Get("Content-Type") != tc.ctype {
					t.Errorf("Content-Type %q", h.Get("Content-Type"))
				}
				if cd := h.Get("Content-Disposition"); cd != `inline; filename="`+tc.name+`"; filename*=utf-8''`+tc.name {
					t.Errorf("Content-Disposition %q", cd)
				}
				checkSecurityHeaders(t, h)

				// Crop to an avatar size: exactly 32x32.
				thumb := func(w, h int, method string) (image.Image, string, []byte) {
					t.Helper()
					resp, err := c.DownloadThumbnail(context.Background(), uri, h, w, mautrix.DownloadThumbnailExtra{Method: method})
					if err != nil {
						t.Fatalf("thumbnail %dx%d %s: %v", w, h, method, err)
					}
					b := readAll(t, resp)
					img, format, err := image.Decode(bytes.NewReader(b))
					if err != nil {
						t.Fatalf("decode thumbnail: %v", err)
					}
					if ct := resp.Header.Get("Content-Type"); ct != "image/"+format {
						t.Errorf("thumbnail Content-Type %q for %s data", ct, format)
					}
					if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "inline") {
						t.Errorf("thumbnail Content-Disposition %q", cd)
					}
					checkSecurityHeaders(t, resp.Header)
					return img, resp.Header.Get("Content-Type"), b
				}
				img, ct, first := thumb(32, 32, "crop")
				if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 32 {
					t.Errorf("32x32 crop is %v", b)
				}
				if ct != tc.thumbType {
					t.Errorf("thumbnail type %s, want %s", ct, tc.thumbType)
				}
				// Made once: the second answer is the stored thumbnail.
				files := len(mediaFiles(t, n))
				if _, _, again := thumb(30, 30, "crop"); !bytes.Equal(first, again) {
					t.Error("thumbnail changed between requests")
				}
				if got := len(mediaFiles(t, n)); got != files {
					t.Errorf("second thumbnail request stored a file (%d -> %d)", files, got)
				}
				// Scale snaps to 320x240 and keeps the aspect ratio; small
				// images are never scaled up.
				img, _, _ = thumb(100, 100, "scale")
				wantW, wantH := min(320, tc.w), min(240, tc.h)
				if b := img.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
					t.Errorf("100x100 scale is %v, want %dx%d", b, wantW, wantH)
				}
				img, _, _ = thumb(96, 96, "crop")
				if b := img.Bounds(); b.Dx() != min(96, tc.h) || b.Dy() != min(96, tc.h) {
					t.Errorf("96x96 crop is %v", b)
				}
			})
		}
	})
}

func checkSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy":      "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';",
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Resource-Policy": "cross-origin",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, h.Get(k), v)
		}
	}
}

func TestThumbnailErrors(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("terr")
	img := upload(t, c, encodePNG(t, testImage(50, 50)), "image/png", "")
	text := upload(t, c, []byte("just text"), "text/plain", "a.txt")
	notImage := upload(t, c, []byte("not really a png"), "image/png", "")
	base := "/_matrix/client/v1/media/thumbnail/localhost/"
	tests := []struct {
		path   string
		status int
		code   string
	}{
		{img.FileID + "?width=32", 400, "M_MISSING_PARAM"},
		{img.FileID + "?width=-1&height=32", 400, "M_INVALID_PARAM"},
		{img.FileID + "?width=abc&height=32", 400, "M_INVALID_PARAM"},
		{img.FileID + "?width=32&height=32&method=stretch", 400, "M_INVALID_PARAM"},
		{text.FileID + "?width=32&height=32", 400, "M_UNKNOWN"},
		{notImage.FileID + "?width=32&height=32", 400, "M_UNKNOWN"},
		{"nope?width=32&height=32", 404, "M_NOT_FOUND"},
	}
	for _, tt := range tests {
		r := n.Do(t, "GET", base+tt.path, c.AccessToken, nil)
		if r.Status != tt.status || r.ErrCode() != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.path, r.Status, r.Body, tt.status, tt.code)
		}
	}
	// The image itself thumbnails, with animated=true too (served static).
	if r := n.Do(t, "GET", base+img.FileID+"?width=32&height=32&animated=true", c.AccessToken, nil); r.Status != 200 {
		t.Errorf("animated thumbnail: %d %s", r.Status, r.Body)
	}
}

func TestEncryptedAtRestAndDeduplicated(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		c := n.Register("enc")
		// Larger than one 64 KiB chunk, with a recognisable plaintext.
		plain := bytes.Repeat([]byte("MATRIXOS-PLAINTEXT-MARKER "), 12000)
		uri := upload(t, c, plain, "text/plain", "big.txt")
		files := mediaFiles(t, n)
		if len(files) != 1 {
			t.Fatalf("stored files: %v", files)
		}
		if fileContains(t, files[0], []byte("MATRIXOS-PLAINTEXT-MARKER")) {
			t.Fatal("the stored file contains the plaintext")
		}
		st, err := os.Stat(filepath.Join(n.Config.DataDir, "media.key"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("media.key mode %v", st.Mode().Perm())
		}
		if got := readAll(t, download(t, c, uri)); !bytes.Equal(got, plain) {
			t.Fatalf("round trip changed the content (%d bytes)", len(got))
		}
		// The same content again (by another user) shares the file.
		d := n.Register("enc")
		uri2 := upload(t, d, plain, "text/plain", "copy.txt")
		if uri2 == uri {
			t.Fatal("same media ID for two uploads")
		}
		if got := len(mediaFiles(t, n)); got != 1 {
			t.Errorf("deduplication: %d files", got)
		}
		// Range requests work across chunk boundaries.
		r := n.Do(t, "GET", "/_matrix/client/v1/media/download/localhost/"+uri.FileID, c.AccessToken, nil, testnode.Header("Range", "bytes=65530-65545"))
		if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, plain[65530:65546]) {
			t.Errorf("range: %d %q", r.Status, r.Body)
		}
		// A tampered file is refused, not served.
		b, _ := os.ReadFile(files[0])
		b[len(b)/2] ^= 1
		os.WriteFile(files[0], b, 0o600)
		if r := n.Do(t, "GET", "/_matrix/client/v1/media/download/localhost/"+uri.FileID, c.AccessToken, nil); r.Status == 200 && bytes.Equal(r.Body, plain) {
			t.Error("tampered file served as if intact")
		}
	})
}

func TestUnsafeTypesAreAttachments(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("html")
	tests := []struct {
		ctype, name, disposition string
	}{
		{"text/html", "page.html", `attachment; filename="page.html"; filename*=utf-8''page.html`},
		{"image/svg+xml", "x.svg", `attachment; filename="x.svg"; filename*=utf-8''x.svg`},
		{"application/javascript", "", "attachment"},
		{"text/html; charset=utf-8", "", "attachment"},
		{"text/plain", "résumé \"final\".txt", `inline; filename="r_sum_ _final_.txt"; filename*=utf-8''r%C3%A9sum%C3%A9%20%22final%22.txt`},
	}
	for _, tt := range tests {
		uri := upload(t, c, []byte("<html><script>alert(1)</script></html>"), tt.ctype, tt.name)
		resp := download(t, c, uri)
		readAll(t, resp)
		if cd := resp.Header.Get("Content-Disposition"); cd != tt.disposition {
			t.Errorf("%s: Content-Disposition %q, want %q", tt.ctype, cd, tt.disposition)
		}
		checkSecurityHeaders(t, resp.Header)
	}
	// The file name in the path overrides the stored one.
	uri := upload(t, c, []byte("x"), "text/html", "page.html")
	r := n.Do(t, "GET", "/_matrix/client/v1/media/download/localhost/"+uri.FileID+"/other.htm", c.AccessToken, nil)
	if cd := r.Header.Get("Content-Disposition"); cd != `attachment; filename="other.htm"; filename*=utf-8''other.htm` {
		t.Errorf("override: Content-Disposition %q", cd)
	}
	// No Content-Type: application/octet-stream.
	r = n.Do(t, "POST", "/_matrix/media/v3/upload", c.AccessToken, []byte("raw"), testnode.Header("Content-Type", ""))
	if r.Status != 200 {
		t.Fatalf("upload without type: %d %s", r.Status, r.Body)
	}
	u, _ := id.ParseContentURI(r.JSON(t)["content_uri"].(string))
	if ct := download(t, c, u).Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("default type %q", ct)
	}
}

func TestAsyncUpload(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		c, other := n.Register("async"), n.Register("other")
		r := n.Do(t, "POST", "/_matrix/media/v1/create", c.AccessToken, nil)
		if r.Status != 200 {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		exp := int64(r.JSON(t)["unused_expires_at"].(float64))
		if now := time.Now().UnixMilli(); exp < now+time.Hour.Milliseconds() {
			t.Errorf("unused_expires_at %d is too soon", exp)
		}
		uri, err := id.ParseContentURI(r.JSON(t)["content_uri"].(string))
		if err != nil {
			t.Fatal(err)
		}
		path := "/_matrix/client/v1/media/download/localhost/" + uri.FileID
		if r := n.Do(t, "GET", path+"?timeout_ms=50", c.AccessToken, nil); r.Status != 504 || r.ErrCode() != "M_NOT_YET_UPLOADED" {
			t.Errorf("pending download: %d %s", r.Status, r.Body)
		}
		// Another user may not upload to it.
		_, err = other.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: uri, ContentBytes: []byte("evil"), ContentType: "text/plain"})
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)

		// A download waiting for the upload gets it as soon as it lands.
		done := make(chan *testnode.Response)
		go func() { done <- n.Do(t, "GET", path+"?timeout_ms=10000", c.AccessToken, nil) }()
		time.Sleep(200 * time.Millisecond)
		if _, err := c.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: uri, ContentBytes: []byte("hello async"), ContentType: "text/plain", FileName: "a.txt"}); err != nil {
			t.Fatalf("upload: %v", err)
		}
		select {
		case r := <-done:
			if r.Status != 200 || string(r.Body) != "hello async" {
				t.Errorf("waiting download: %d %q", r.Status, r.Body)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("waiting download was not woken by the upload")
		}
		_, err = c.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: uri, ContentBytes: []byte("again"), ContentType: "text/plain"})
		testnode.WantErr(t, err, "M_CANNOT_OVERWRITE_MEDIA", 409)
		_, err = c.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: id.ContentURI{Homeserver: "localhost", FileID: "unknown"}, ContentBytes: []byte("x")})
		testnode.WantErr(t, err, "M_NOT_FOUND", 404)

		// mautrix's async helper works end to end.
		resp, err := c.UploadAsync(ctx, mautrix.ReqUploadMedia{ContentBytes: []byte("via helper"), ContentType: "text/plain", DoneCallback: func() {}})
		if err != nil {
			t.Fatal(err)
		}
		r = n.Do(t, "GET", "/_matrix/client/v1/media/download/localhost/"+resp.ContentURI.FileID+"?timeout_ms=5000", c.AccessToken, nil)
		if r.Status != 200 || string(r.Body) != "via helper" {
			t.Errorf("UploadAsync download: %d %q", r.Status, r.Body)
		}
	})
}

func TestPendingUploadLimit(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("pend")
	var last *testnode.Response
	for range 51 {
		last = n.Do(t, "POST", "/_matrix/media/v1/create", c.AccessToken, nil)
	}
	if last.Status != 429 || last.ErrCode() != "M_LIMIT_EXCEEDED" {
		t.Errorf("51st pending upload: %d %s", last.Status, last.Body)
	}
}

func TestSizeLimitAndQuota(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		c := n.Register("quota")
		ctx := context.Background()
		_, err := c.UploadBytes(ctx, make([]byte, 1001), "application/octet-stream")
		testnode.WantErr(t, err, "M_TOO_LARGE", 413)
		// Without Content-Length the limit holds as well.
		_, err = c.UploadMedia(ctx, mautrix.ReqUploadMedia{Content: bytes.NewReader(make([]byte, 1500)), ContentLength: -1, ContentType: "text/plain"})
		testnode.WantErr(t, err, "M_TOO_LARGE", 413)
		for i := range 2 {
			if _, err := c.UploadBytes(ctx, bytes.Repeat([]byte{byte(i)}, 1000), "application/octet-stream"); err != nil {
				t.Fatalf("upload %d: %v", i, err)
			}
		}
		_, err = c.UploadBytes(ctx, make([]byte, 600), "application/octet-stream")
		testnode.WantErr(t, err, "M_FORBIDDEN", 403)
		if _, err := c.UploadBytes(ctx, make([]byte, 500), "application/octet-stream"); err != nil {
			t.Errorf("upload within the quota: %v", err)
		}
		// Another user has their own quota.
		if _, err := n.Register("quota").UploadBytes(ctx, make([]byte, 999), "application/octet-stream"); err != nil {
			t.Errorf("other user's upload: %v", err)
		}
		if got := len(mediaFiles(t, n)); got != 4 {
			t.Errorf("refused uploads left files behind: %d files", got)
		}
	}, func(c *config.Config) { c.MaxUploadBytes = 1000; c.MediaQuotaBytes = 2500 })
}

func TestDeleteRemovesFiles(t *testing.T) {
	testnode.Each(t, func(t *testing.T, n *testnode.Node) {
		ctx := context.Background()
		c := n.Register("del")
		data := encodePNG(t, testImage(200, 100))
		a := upload(t, c, data, "image/png", "a.png")
		b := upload(t, c, data, "image/png", "b.png")
		if _, err := c.DownloadThumbnail(ctx, a, 32, 32, mautrix.DownloadThumbnailExtra{Method: "crop"}); err != nil {
			t.Fatal(err)
		}
		if got := len(mediaFiles(t, n)); got != 2 {
			t.Fatalf("%d files, want original + thumbnail", got)
		}
		list, err := n.Media.ListByUser(ctx, c.UserID, 0, 10)
		if err != nil || len(list) != 2 {
			t.Fatalf("ListByUser: %d items, %v", len(list), err)
		}
		if list[0].MediaID != b.FileID || list[0].Filename != "b.png" || list[0].Size != int64(len(data)) {
			t.Errorf("newest upload first: %+v", list[0])
		}
		if page, total, err := n.Media.UserMediaPage(ctx, c.UserID, 1, 10); err != nil || len(page) != 1 || total != 2 || page[0].MediaID != a.FileID {
			t.Errorf("second page: %v (%d), %v", page, total, err)
		}
		if err := n.Media.Delete(ctx, "localhost", a.FileID); err != nil {
			t.Fatal(err)
		}
		// b still refers to the content; a's thumbnail is gone.
		if got := len(mediaFiles(t, n)); got != 1 {
			t.Errorf("after deleting a: %d files, want 1", got)
		}
		if _, err := c.Download(ctx, a); err == nil {
			t.Error("deleted media still downloads")
		} else {
			testnode.WantErr(t, err, "M_NOT_FOUND", 404)
		}
		if got := readAll(t, download(t, c, b)); !bytes.Equal(got, data) {
			t.Error("b lost its content")
		}
		if err := n.Media.Delete(ctx, "localhost", b.FileID); err != nil {
			t.Fatal(err)
		}
		if files := mediaFiles(t, n); len(files) != 0 {
			t.Errorf("files left after deleting everything: %v", files)
		}
	})
}

func TestQuarantine(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	ctx := context.Background()
	c := n.Register("q")
	uri := upload(t, c, []byte("bad"), "text/plain", "")
	if err := n.Media.QuarantineBy(ctx, "localhost", uri.FileID, "@admin:localhost"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Download(ctx, uri)
	testnode.WantErr(t, err, "M_NOT_FOUND", 404)
	if m, err := n.Media.Get(ctx, "localhost", uri.FileID); err != nil || !m.Quarantined || m.QuarantinedBy != "@admin:localhost" {
		t.Errorf("quarantined media: %+v, %v", m, err)
	}
	if err := n.Media.Quarantine(ctx, "localhost", uri.FileID, false); err != nil {
		t.Fatal(err)
	}
	readAll(t, download(t, c, uri))
}

func TestLegacyEndpoints(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("unauthenticated=%v", open), func(t *testing.T) {
			n := testnode.Start(t, testnode.SQLite, func(c *config.Config) { c.MediaLegacyNoAuth = open })
			c := n.Register("legacy")
			data := encodePNG(t, testImage(40, 40))
			uri := upload(t, c, data, "image/png", "l.png")
			dl := "/_matrix/media/v3/download/localhost/" + uri.FileID
			th := "/_matrix/media/v3/thumbnail/localhost/" + uri.FileID + "?width=32&height=32&method=crop"
			for _, p := range []string{dl, dl + "/name.png", th} {
				r := n.Do(t, "GET", p, "", nil)
				if open && r.Status != 200 || !open && (r.Status != 404 || r.ErrCode() != "M_NOT_FOUND") {
					t.Errorf("GET %s without token: %d %s", p, r.Status, r.Body)
				}
				if r := n.Do(t, "GET", p, c.AccessToken, nil); r.Status != 200 {
					t.Errorf("GET %s with token: %d", p, r.Status)
				}
			}
			if r := n.Do(t, "GET", dl, "nonsense", nil); r.Status != 401 {
				t.Errorf("bad token: %d", r.Status)
			}
		})
	}
}

func TestRemoteMediaNotFound(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("remote")
	_, err := c.Download(context.Background(), id.ContentURI{Homeserver: "elsewhere.example", FileID: "abc"})
	testnode.WantErr(t, err, "M_NOT_FOUND", 404)
}

func TestLargeStreamingUpload(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("big")
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	resp, err := c.UploadMedia(context.Background(), mautrix.ReqUploadMedia{Content: bytes.NewReader(data), ContentLength: int64(len(data)), ContentType: "application/zip", FileName: "a.zip"})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, download(t, c, resp.ContentURI))
	if !bytes.Equal(got, data) {
		t.Fatalf("round trip of %d bytes failed (%d back)", len(data), len(got))
	}
}

// withOrientation inserts an EXIF APP1 segment with the orientation tag
// right after the JPEG's start marker.
func withOrientation(jpg []byte, o uint16) []byte {
	tiff := []byte{'M', 'M', 0, '*', 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, byte(o >> 8), byte(o), 0, 0, 0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

func TestThumbnailFollowsEXIFOrientation(t *testing.T) {
	n := testnode.Start(t, testnode.SQLite)
	c := n.Register("exif")
	// Landscape as stored: left half red, right half blue. Orientation 6
	// turns it a quarter clockwise: portrait, red on top.
	src := image.NewRGBA(image.Rect(0, 0, 80, 40))
	for y := range 40 {
		for x := range 80 {
			if x < 40 {
				src.Set(x, y, color.RGBA{255, 0, 0, 255})
			} else {
				src.Set(x, y, color.RGBA{0, 0, 255, 255})
			}
		}
	}
	uri := upload(t, c, withOrientation(encodeJPEG(t, src), 6), "image/jpeg", "turned.jpg")
	resp, err := c.DownloadThumbnail(context.Background(), uri, 600, 800, mautrix.DownloadThumbnailExtra{Method: "scale"})
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := image.Decode(bytes.NewReader(readAll(t, resp)))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 40 || b.Dy() != 80 {
		t.Fatalf("thumbnail is %v, want 40x80", b)
	}
	top, bottom := img.At(20, 10), img.At(20, 70)
	if r, _, b, _ := top.RGBA(); r < 0x8000 || b > 0x8000 {
		t.Errorf("top is %v, want red", top)
	}
	if r, _, b, _ := bottom.RGBA(); r > 0x8000 || b < 0x8000 {
		t.Errorf("bottom is %v, want blue", bottom)
	}
}
