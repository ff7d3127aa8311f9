package media

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/chacha20poly1305"
)

// The legacy format, which the node wrote before it used age (crypt.go):
// legacyReader still reads it, nothing writes it. Files were sealed with
// XChaCha20-Poly1305 in chunks:
//
//	header: magic (8) | salt (32) | nonce prefix (16) | commitment (32)
//	chunks: each chunkSize bytes of plaintext sealed (+16 tag); the last
//	        chunk holds 1..chunkSize bytes (0 only for an empty file)
//
// Each file has its own keys, derived with HKDF from the node's media key
// and the file's random salt. A chunk's nonce is the nonce prefix and the
// chunk's index; its additional data is the header's first 56 bytes and a
// last-chunk flag, so chunks cannot be reordered, dropped or truncated
// unnoticed. The commitment, HMAC(file MAC key, sha256 of the plaintext),
// binds the file to the content hash it is stored under: a file moved to
// another name is refused.
const (
	chunkSize   = 64 << 10
	tagSize     = chacha20poly1305.Overhead
	legacyMagic = "MXMEDIA1"
	saltSize    = 32
	prefixSize  = 16
	commitSize  = sha256.Size
	magicSize   = 8 // len(legacyMagic)
	adSize      = magicSize + saltSize + prefixSize
	headerSize  = adSize + commitSize
	sealedSize  = chunkSize + tagSize
)

// fileKeys derives a file's encryption and MAC keys.
func fileKeys(nodeKey, salt []byte) (enc, mac []byte, err error) {
	k, err := hkdf.Key(sha256.New, nodeKey, salt, "matrixos media file v1", 64)
	if err != nil {
		return nil, nil, err
	}
	return k[:32], k[32:], nil
}

func commitment(macKey, sum []byte) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte("content sha256"))
	m.Write(sum)
	return m.Sum(nil)
}

func chunkNonce(prefix []byte, i uint64) []byte {
	n := make([]byte, chacha20poly1305.NonceSizeX)
	copy(n, prefix)
	binary.BigEndian.PutUint64(n[prefixSize:], i)
	return n
}

func chunkAD(header []byte, last bool) []byte {
	ad := make([]byte, adSize+1)
	copy(ad, header[:adSize])
	if last {
		ad[adSize] = 1
	}
	return ad
}

// legacyReader is an io.ReadSeekCloser over a legacy file's plaintext.
type legacyReader struct {
	f    *os.File
	aead interface {
		Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
	}
	header []byte
	chunks int64
	size   int64 // plaintext size
	fsize  int64
	pos    int64
	cur    int64 // index of the chunk in plain, -1 if none
	plain  []byte
	sealed []byte
}

// newLegacyReader reads the legacy file f and checks that it holds the
// content whose sha256 is sum.
func newLegacyReader(f *os.File, nodeKey, sum []byte) (*legacyReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	header := make([]byte, headerSize)
	if _, err := io.ReadFull(f, header); err != nil || !bytes.Equal(header[:magicSize], []byte(legacyMagic)) {
		return nil, errCorrupt
	}
	enc, mac, err := fileKeys(nodeKey, header[magicSize:magicSize+saltSize])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(commitment(mac, sum), header[adSize:]) != 1 {
		return nil, errCorrupt
	}
	aead, err := chacha20poly1305.NewX(enc)
	if err != nil {
		return nil, err
	}
	body := st.Size() - headerSize
	if body < tagSize {
		return nil, errCorrupt
	}
	chunks := (body + sealedSize - 1) / sealedSize
	return &legacyReader{
		f: f, aead: aead, header: header, chunks: chunks,
		size: body - chunks*tagSize, fsize: st.Size(), cur: -1,
		sealed: make([]byte, sealedSize),
	}, nil
}

// Size is the plaintext's length.
func (r *legacyReader) Size() int64 { return r.size }

func (r *legacyReader) load(i int64) error {
	if r.cur == i {
		return nil
	}
	off := headerSize + i*sealedSize
	n := min(int64(sealedSize), r.fsize-off)
	buf := r.sealed[:n]
	if _, err := r.f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("read media chunk: %w", err)
	}
	plain, err := r.aead.Open(r.plain[:0], chunkNonce(r.header[magicSize+saltSize:adSize], uint64(i)), buf, chunkAD(r.header, i == r.chunks-1))
	if err != nil {
		r.cur = -1
		return errCorrupt
	}
	r.plain, r.cur = plain, i
	return nil
}

func (r *legacyReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		// Authenticate the last chunk even for empty files, so truncation
		// is noticed by readers that read to the end.
		if r.size == 0 {
			if err := r.load(0); err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	i := r.pos / chunkSize
	if err := r.load(i); err != nil {
		return 0, err
	}
	n := copy(p, r.plain[r.pos-i*chunkSize:])
	r.pos += int64(n)
	return n, nil
}

func (r *legacyReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.pos = offset
	return offset, nil
}

func (r *legacyReader) Close() error { return r.f.Close() }
