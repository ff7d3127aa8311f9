package media

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// legacySealWriter writes the legacy format, as the node did before it
// used age, so that tests can check that such files still read.
type legacySealWriter struct {
	f    *os.File
	aead interface {
		Seal(dst, nonce, plaintext, ad []byte) []byte
	}
	mac    []byte
	header []byte
	buf    []byte
	out    []byte
	n      uint64 // chunks written
	size   int64
	sum    hash.Hash
}

func newLegacySealWriter(f *os.File, nodeKey []byte) (*legacySealWriter, error) {
	header := make([]byte, headerSize)
	copy(header, legacyMagic)
	if _, err := rand.Read(header[magicSize:adSize]); err != nil {
		return nil, fmt.Errorf("media salt: %w", err)
	}
	enc, mac, err := fileKeys(nodeKey, header[magicSize:magicSize+saltSize])
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(enc)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(header); err != nil {
		return nil, err
	}
	return &legacySealWriter{
		f: f, aead: aead, mac: mac, header: header,
		buf: make([]byte, 0, chunkSize), out: make([]byte, 0, sealedSize),
		sum: sha256.New(),
	}, nil
}

func (w *legacySealWriter) Write(p []byte) (int, error) {
	written := len(p)
	w.sum.Write(p)
	w.size += int64(len(p))
	for len(p) > 0 {
		if len(w.buf) == chunkSize {
			// More data follows, so the full buffer is not the last chunk.
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
		n := min(chunkSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:n]...)
		p = p[n:]
	}
	return written, nil
}

func (w *legacySealWriter) flush(last bool) error {
	w.out = w.aead.Seal(w.out[:0], chunkNonce(w.header[magicSize+saltSize:adSize], w.n), w.buf, chunkAD(w.header, last))
	w.n++
	w.buf = w.buf[:0]
	_, err := w.f.Write(w.out)
	return err
}

// Close seals the last chunk and writes the commitment; it does not close
// the file. It returns the plaintext's sha256.
func (w *legacySealWriter) Close() ([]byte, error) {
	if err := w.flush(true); err != nil {
		return nil, err
	}
	sum := w.sum.Sum(nil)
	if _, err := w.f.WriteAt(commitment(w.mac, sum), adSize); err != nil {
		return nil, err
	}
	return sum, nil
}

// putLegacy stores content in the legacy format, as the node did before
// it used age, and returns its hash.
func putLegacy(t *testing.T, s *Store, content []byte) string {
	t.Helper()
	sum := sha256.Sum256(content)
	path := s.path(sum[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := newLegacySealWriter(f, s.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum[:])
}

func putAge(t *testing.T, s *Store, content []byte) string {
	t.Helper()
	b, err := s.Put(bytes.NewReader(content), int64(len(content)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.SHA256
}

// readContent opens sha and reads it all, then the 16 bytes at 65530
// (across the first chunk boundary) after a seek.
func readContent(s *Store, sha string) (all, mid []byte, err error) {
	r, err := s.Open(sha)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	if all, err = io.ReadAll(r); err != nil {
		return nil, nil, err
	}
	if int64(len(all)) != r.Size() {
		return nil, nil, fmt.Errorf("read %d bytes, Size %d", len(all), r.Size())
	}
	if _, err := r.Seek(65530, io.SeekStart); err != nil {
		return nil, nil, err
	}
	mid = make([]byte, 16)
	if _, err := io.ReadFull(r, mid); err != nil {
		return nil, nil, err
	}
	return all, mid, nil
}

// TestStoreFormats: new content is stored as age files; content stored in
// the legacy format still reads, whole and by range.
func TestStoreFormats(t *testing.T) {
	for _, tt := range []struct {
		name  string
		put   func(*testing.T, *Store, []byte) string
		magic string
	}{
		{"age", putAge, "age-encryption.org/v1\n"},
		{"legacy", putLegacy, legacyMagic},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			content := make([]byte, 3*chunkSize+100)
			rand.Read(content)
			sha := tt.put(t, s, content)
			sum, _ := hex.DecodeString(sha)
			stored, err := os.ReadFile(s.path(sum))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(stored, []byte(tt.magic)) {
				t.Fatalf("stored file starts %q, want %q", stored[:24], tt.magic)
			}
			all, mid, err := readContent(s, sha)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(all, content) || !bytes.Equal(mid, content[65530:65546]) {
				t.Fatal("content read back differs")
			}
		})
	}
}

// TestStoreAgeFile: a stored file is an age file that the identity in
// media.age (mode 0600) decrypts to the content followed by its sha256.
func TestStoreAgeFile(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("hello age")
	sha := putAge(t, s, content)
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", IdentityFile, st.Mode().Perm())
	}
	idFile, err := os.Open(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	defer idFile.Close()
	ids, err := age.ParseIdentities(idFile)
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := hex.DecodeString(sha)
	f, err := os.Open(s.path(sum))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, ids...)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(content, sum...); !bytes.Equal(plain, want) {
		t.Errorf("decrypted %q, want the content and its sha256", plain)
	}
	// A second start reads the same identity.
	s2, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if all, _, err := readContent(s2, putAge(t, s2, bytes.Repeat(content, 10000))); err != nil || len(all) != 10000*len(content) {
		t.Fatalf("after reopening: %d bytes, %v", len(all), err)
	}
	if all, err := readAllContent(s2, sha); err != nil || !bytes.Equal(all, content) {
		t.Fatalf("file of the first start after reopening: %q, %v", all, err)
	}
}

func readAllContent(s *Store, sha string) ([]byte, error) {
	r, err := s.Open(sha)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestStoreRefusesTamperedFiles: a changed, truncated, extended or moved
// file, in either format, errors instead of serving other bytes.
func TestStoreRefusesTamperedFiles(t *testing.T) {
	content := make([]byte, 2*chunkSize+10)
	rand.Read(content)
	other := []byte("another file")
	tamper := map[string]func(b []byte) []byte{
		"header":    func(b []byte) []byte { b[30] ^= 1; return b },
		"middle":    func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"last byte": func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)-chunkSize/2] },
		"extended":  func(b []byte) []byte { return append(b, 0) },
		"chunk cut": func(b []byte) []byte { return append(b[:len(b)/3], b[len(b)/3+chunkSize:]...) },
	}
	for _, format := range []struct {
		name string
		put  func(*testing.T, *Store, []byte) string
	}{{"age", putAge}, {"legacy", putLegacy}} {
		for name, change := range tamper {
			t.Run(format.name+"/"+name, func(t *testing.T) {
				s, err := OpenStore(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				sha := format.put(t, s, content)
				sum, _ := hex.DecodeString(sha)
				b, err := os.ReadFile(s.path(sum))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(s.path(sum), change(b), 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := readAllContent(s, sha); err == nil {
					t.Fatal("tampered file read without error")
				}
			})
		}
		t.Run(format.name+"/moved", func(t *testing.T) {
			s, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			sha, otherSHA := format.put(t, s, content), format.put(t, s, other)
			sum, _ := hex.DecodeString(sha)
			otherSum, _ := hex.DecodeString(otherSHA)
			if err := os.Rename(s.path(otherSum), s.path(sum)); err != nil {
				t.Fatal(err)
			}
			_, err = readAllContent(s, sha)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("file moved to another content's name: %v, want errCorrupt", err)
			}
		})
	}
}

// TestStoreKeyFilesPrivate: a media key or identity that others may read
// is refused.
func TestStoreKeyFilesPrivate(t *testing.T) {
	for _, name := range []string{KeyFile, IdentityFile} {
		dir := t.TempDir()
		if _, err := OpenStore(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Errorf("%s mode 0644: %v, want refused", name, err)
		}
	}
}

// TestStoreKeyFilesWrittenWhole: the key files are written under a
// temporary name and linked into place, which leaves nothing else behind.
func TestStoreKeyFilesWrittenWhole(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenStore(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"media", IdentityFile, KeyFile}; !slices.Equal(names, want) {
		t.Fatalf("data directory holds %v, want %v", names, want)
	}
}
