package media

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // registers the GIF decoder
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers the WebP decoder

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// thumbSize is a thumbnail size the server makes.
type thumbSize struct {
	W, H   int
	Method string // "crop" or "scale"
}

// thumbSizes are the sizes thumbnails are made in: the spec's usual set and
// two larger crops. Requests snap to one of them, so each media item has at
// most this many thumbnails.
var thumbSizes = []thumbSize{
	{32, 32, "crop"},
	{96, 96, "crop"},
	{320, 320, "crop"},
	{640, 640, "crop"},
	{320, 240, "scale"},
	{640, 480, "scale"},
	{800, 600, "scale"},
}

// snapSize picks the smallest size of the method that is at least as large
// as asked, or the method's largest size.
func snapSize(w, h int, method string) thumbSize {
	var best, largest thumbSize
	for _, s := range thumbSizes {
		if s.Method != method {
			continue
		}
		largest = s
		if s.W >= w && s.H >= h && best.W == 0 {
			best = s
		}
	}
	if best.W == 0 {
		return largest
	}
	return best
}

const (
	// maxThumbnailPixels refuses to decode images larger than this
	// (decompression bombs).
	maxThumbnailPixels = 50_000_000
	// maxThumbnailSource refuses to thumbnail larger files.
	maxThumbnailSource = 100 << 20
)

var (
	errCannotThumbnail = &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Message: "cannot generate thumbnails for the requested content"}
	errThumbTooLarge   = mxhttp.TooLarge("content is too large to thumbnail")
)

// thumbnailable lists the content types thumbnails are made of.
var thumbnailable = map[string]bool{"image/jpeg": true, "image/jpg": true, "image/png": true, "image/gif": true, "image/webp": true}

// Thumb is a stored thumbnail.
type Thumb struct {
	ContentType string
	SHA256      string
	Size        int64
}

// thumbGen serialises thumbnail generation: one at a time per key, and at
// most two decodes at once (they take memory).
type thumbGen struct {
	mu   sync.Mutex
	keys map[string]*sync.Mutex
	sem  chan struct{}
}

var gen = thumbGen{keys: map[string]*sync.Mutex{}, sem: make(chan struct{}, 2)}

func (g *thumbGen) lock(key string) func() {
	g.mu.Lock()
	m, ok := g.keys[key]
	if !ok {
		m = &sync.Mutex{}
		g.keys[key] = m
	}
	g.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		g.mu.Lock()
		if m.TryLock() { // nobody else waits: forget the key
			delete(g.keys, key)
			m.Unlock()
		}
		g.mu.Unlock()
	}
}

// Thumbnail returns a thumbnail of m at least w×h (where the image is that
// large), making and storing it on first request.
func (s *Service) Thumbnail(ctx context.Context, m *Media, w, h int, method string) (*Thumb, error) {
	base := strings.ToLower(strings.TrimSpace(strings.Split(m.ContentType, ";")[0]))
	if !thumbnailable[base] {
		return nil, errCannotThumbnail
	}
	if m.Size > maxThumbnailSource {
		return nil, errThumbTooLarge
	}
	size := snapSize(w, h, method)
	if t, err := s.storedThumb(ctx, m, size); t != nil || err != nil {
		return t, err
	}
	unlock := gen.lock(fmt.Sprintf("%s/%s/%d/%d/%s", m.Server, m.MediaID, size.W, size.H, size.Method))
	defer unlock()
	if t, err := s.storedThumb(ctx, m, size); t != nil || err != nil {
		return t, err
	}
	select {
	case gen.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	data, ctype, err := s.makeThumb(m, size)
	<-gen.sem
	if err != nil {
		return nil, err
	}
	t := &Thumb{ContentType: ctype}
	err = s.put(ctx, &UploadRequest{Body: bytes.NewReader(data), Limit: int64(len(data))}, func(b Blob) error {
		t.SHA256, t.Size = b.SHA256, b.Size
		return s.db.Write(ctx, func(tx *storage.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO media_thumbnails (server, media_id, width, height, method, content_type, size, sha256)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
				m.Server, m.MediaID, size.W, size.H, size.Method, ctype, b.Size, b.SHA256)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Service) storedThumb(ctx context.Context, m *Media, size thumbSize) (*Thumb, error) {
	var t Thumb
	err := s.db.QueryRow(ctx, `SELECT content_type, sha256, size FROM media_thumbnails
		WHERE server = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5`,
		m.Server, m.MediaID, size.W, size.H, size.Method).Scan(&t.ContentType, &t.SHA256, &t.Size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load thumbnail: %w", err)
	}
	return &t, nil
}

// makeThumb decodes the original (the first frame of animations) and
// renders the thumbnail: JPEG for opaque photos, PNG otherwise.
func (s *Service) makeThumb(m *Media, size thumbSize) ([]byte, string, error) {
	r, err := s.Open(m)
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return nil, "", errCannotThumbnail
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, "", errCannotThumbnail
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxThumbnailPixels {
		return nil, "", errThumbTooLarge
	}
	orientation := 1
	if format == "jpeg" {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, "", err
		}
		head, _ := io.ReadAll(io.LimitReader(r, 128<<10))
		orientation = jpegOrientation(head)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, "", err
	}
	src, _, err := image.Decode(r)
	if err != nil {
		return nil, "", errCannotThumbnail
	}
	box := size
	if swapsAxes(orientation) {
		box.W, box.H = size.H, size.W
	}
	dst := orient(resize(src, box), orientation)
	var buf bytes.Buffer
	opaque := format == "jpeg"
	if o, ok := src.(interface{ Opaque() bool }); ok && format == "webp" {
		opaque = o.Opaque()
	}
	if opaque {
		if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 85}); err != nil {
			return nil, "", fmt.Errorf("encode thumbnail: %w", err)
		}
		return buf.Bytes(), "image/jpeg", nil
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, dst); err != nil {
		return nil, "", fmt.Errorf("encode thumbnail: %w", err)
	}
	return buf.Bytes(), "image/png", nil
}

// resize scales src to fit in the size (scale) or to fill it, cutting the
// overflow from the middle (crop). Images are never scaled up.
func resize(src image.Image, size thumbSize) image.Image {
	b := src.Bounds()
	sw, sh := b.Dx(), b.Dy()
	srcRect := b
	var dw, dh int
	if size.Method == "crop" {
		// The largest centred region with the target's aspect ratio.
		cw, ch := sw, sh
		if sw*size.H > sh*size.W {
			cw = max(1, sh*size.W/size.H)
		} else {
			ch = max(1, sw*size.H/size.W)
		}
		x0 := b.Min.X + (sw-cw)/2
		y0 := b.Min.Y + (sh-ch)/2
		srcRect = image.Rect(x0, y0, x0+cw, y0+ch)
		dw, dh = size.W, size.H
		if cw < size.W {
			dw, dh = cw, ch
		}
	} else {
		dw, dh = sw, sh
		if sw > size.W || sh > size.H {
			if sw*size.H > sh*size.W {
				dw, dh = size.W, max(1, sh*size.W/sw)
			} else {
				dw, dh = max(1, sw*size.H/sh), size.H
			}
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	draw.BiLinear.Scale(dst, dst.Bounds(), src, srcRect, draw.Src, nil)
	return dst
}
