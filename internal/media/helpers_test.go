package media_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
	"github.com/matrixos/matrixos/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }

func upload(t *testing.T, c *mautrix.Client, data []byte, contentType, name string) id.ContentURI {
	t.Helper()
	resp, err := c.UploadMedia(context.Background(), mautrix.ReqUploadMedia{ContentBytes: data, ContentType: contentType, FileName: name})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return resp.ContentURI
}

func download(t *testing.T, c *mautrix.Client, uri id.ContentURI) *http.Response {
	t.Helper()
	resp, err := c.Download(context.Background(), uri)
	if err != nil {
		t.Fatalf("download %s: %v", uri, err)
	}
	return resp
}

// testImage is a w×h picture with some structure (a gradient and a block).
func testImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255}
			if x > w/3 && x < 2*w/3 && y > h/3 && y < 2*h/3 {
				c = color.NRGBA{255, 255, 255, 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func encodePNG(t *testing.T, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t *testing.T, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// encodeGIF makes a two-frame animation; thumbnails use the first frame.
func encodeGIF(t *testing.T, img image.Image) []byte {
	b := img.Bounds()
	pal := color.Palette{color.Black, color.White, color.NRGBA{255, 0, 0, 255}}
	f1, f2 := image.NewPaletted(b, pal), image.NewPaletted(b, pal)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			f1.SetColorIndex(x, y, uint8((x/4+y/4)%2))
			f2.SetColorIndex(x, y, 2)
		}
	}
	var out bytes.Buffer
	if err := gif.EncodeAll(&out, &gif.GIF{Image: []*image.Paletted{f1, f2}, Delay: []int{10, 10}}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// encodeWebP writes a w×h lossless WebP (VP8L) checkerboard of two greens,
// using one- and two-symbol "simple" prefix codes so that every pixel is a
// single bit. Only for tests: it is the smallest encoder that makes a real
// file for the decoder.
func encodeWebP(w, h int) []byte {
	var bits []byte
	var acc uint64
	var n uint
	put := func(v uint64, width uint) {
		acc |= v << n
		n += width
		for n >= 8 {
			bits = append(bits, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	put(0x2f, 8) // VP8L signature
	put(uint64(w-1), 14)
	put(uint64(h-1), 14)
	put(0, 1) // alpha unused
	put(0, 3) // version 0
	put(0, 1) // no transform
	put(0, 1) // no colour cache
	put(0, 1) // one prefix code group
	// green: two symbols; red, blue, alpha: one; distance: symbol 0.
	put(1, 1)
	put(1, 1)
	put(1, 1)
	put(0x20, 8)
	put(0xe0, 8)
	for _, v := range []uint64{0x80, 0x40, 0xff} {
		put(1, 1)
		put(0, 1)
		put(1, 1)
		put(v, 8)
	}
	put(1, 1)
	put(0, 1)
	put(0, 1)
	put(0, 1)
	for y := range h {
		for x := range w {
			put(uint64((x/8+y/8)%2), 1)
		}
	}
	if n > 0 {
		bits = append(bits, byte(acc))
	}
	pad := len(bits) % 2
	var out bytes.Buffer
	out.WriteString("RIFF")
	binary.Write(&out, binary.LittleEndian, uint32(4+8+len(bits)+pad))
	out.WriteString("WEBPVP8L")
	binary.Write(&out, binary.LittleEndian, uint32(len(bits)))
	out.Write(bits)
	if pad == 1 {
		out.WriteByte(0)
	}
	return out.Bytes()
}

// mediaFiles lists the stored files under the node's media directory.
func mediaFiles(t *testing.T, n *testnode.Node) []string {
	t.Helper()
	var out []string
	root := filepath.Join(n.Config.DataDir, "media")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(filepath.Dir(p)) != "tmp" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileContains(t *testing.T, path string, needle []byte) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, needle)
}
