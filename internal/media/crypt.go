package media

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"filippo.io/age"
)

// Files at rest are age files (age-encryption.org/v1, filippo.io/age)
// encrypted to the node's media identity, a hybrid ML-KEM-768 + X25519
// key: each file gets its own random file key, and its payload is sealed
// in authenticated 64 KiB chunks, so large files stream both ways without
// being held in memory and a byte range decrypts only the chunks it
// covers. The plaintext is the content followed by its sha256, checked
// on open, which binds the file to the content hash it is stored under: a
// file moved to another name is refused.
//
// Files written before the node used age are read by legacy.go.
const trailerSize = sha256.Size

// errCorrupt is returned for files that fail authentication.
var errCorrupt = errors.New("media file is corrupt or was tampered with")

// sealWriter encrypts what is written to it and hashes the plaintext.
// Close appends the hash and finishes the file.
type sealWriter struct {
	w   io.WriteCloser
	sum hash.Hash
}

func newSealWriter(dst io.Writer, to age.Recipient) (*sealWriter, error) {
	w, err := age.Encrypt(dst, to)
	if err != nil {
		return nil, fmt.Errorf("encrypt media: %w", err)
	}
	return &sealWriter{w: w, sum: sha256.New()}, nil
}

func (w *sealWriter) Write(p []byte) (int, error) {
	w.sum.Write(p)
	return w.w.Write(p)
}

// Close writes the trailer and flushes the last chunk; it does not close
// the underlying file. It returns the content's sha256.
func (w *sealWriter) Close() ([]byte, error) {
	sum := w.sum.Sum(nil)
	if _, err := w.w.Write(sum); err != nil {
		return nil, err
	}
	if err := w.w.Close(); err != nil {
		return nil, err
	}
	return sum, nil
}

// openSealed opens the media file at path, in either format, and checks
// that it holds the content whose sha256 is sum.
func openSealed(path string, id age.Identity, legacyKey, sum []byte) (Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var r Reader
	head := make([]byte, len(legacyMagic))
	if _, err = f.ReadAt(head, 0); err == nil && bytes.Equal(head, []byte(legacyMagic)) {
		r, err = newLegacyReader(f, legacyKey, sum)
	} else {
		r, err = newAgeReader(f, id, sum)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// ageReader is an io.ReadSeekCloser over an age file's content.
type ageReader struct {
	*io.SectionReader
	f *os.File
}

func newAgeReader(f *os.File, id age.Identity, sum []byte) (*ageReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// DecryptReaderAt authenticates the header and the last chunk, so a
	// truncated or extended file fails here.
	plain, size, err := age.DecryptReaderAt(f, st.Size(), id)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	size -= trailerSize
	if size < 0 {
		return nil, errCorrupt
	}
	trailer := make([]byte, trailerSize)
	// A ReaderAt may answer io.EOF along with the last bytes.
	if n, err := plain.ReadAt(trailer, size); n != trailerSize {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if subtle.ConstantTimeCompare(trailer, sum) != 1 {
		return nil, errCorrupt
	}
	return &ageReader{SectionReader: io.NewSectionReader(plain, 0, size), f: f}, nil
}

func (r *ageReader) Close() error { return r.f.Close() }
