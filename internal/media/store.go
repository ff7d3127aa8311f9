package media

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"
)

// KeyFile is the media key's file name in the data directory. The key
// names the stored files and decrypts those written before the node used
// age.
const KeyFile = "media.key"

// IdentityFile is the file name, in the data directory, of the age
// identity that encrypts stored files.
const IdentityFile = "media.age"

// errTooLarge is returned by Put when the content exceeds its limit.
var errTooLarge = errors.New("content too large")

// Store keeps file contents under <data>/media, addressed by the sha256 of
// the plaintext (one file per distinct content) and encrypted to the
// node's age identity. File names are an HMAC of the hash, so the
// directory does not reveal which known files the node holds.
type Store struct {
	dir       string
	key       []byte // media.key: file names and legacy files
	nameKey   []byte
	identity  age.Identity
	recipient age.Recipient
	locks     [64]sync.Mutex
}

// OpenStore opens the store in dataDir, creating the directory, the media
// key and the age identity (mode 0600) on first use.
func OpenStore(dataDir string) (*Store, error) {
	key, err := loadOrCreateKey(filepath.Join(dataDir, KeyFile))
	if err != nil {
		return nil, err
	}
	identity, err := loadOrCreateIdentity(filepath.Join(dataDir, IdentityFile))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, "media")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("create media directory: %w", err)
	}
	// Leftovers of uploads cut short by a crash.
	if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("matrixos media names v1"))
	return &Store{dir: dir, key: key, nameKey: m.Sum(nil), identity: identity, recipient: identity.Recipient()}, nil
}

func loadOrCreateKey(path string) ([]byte, error) {
	const prefix = "matrixos-media-key-v1 "
	text, err := loadOrCreateSecret(path, "media key", func() (string, error) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return "", err
		}
		return prefix + base64.RawStdEncoding.EncodeToString(key) + "\n", nil
	})
	if err != nil {
		return nil, err
	}
	enc, ok := strings.CutPrefix(strings.TrimSpace(text), prefix)
	key, err := base64.RawStdEncoding.DecodeString(enc)
	if !ok || err != nil || len(key) != 32 {
		return nil, fmt.Errorf("media key %s is malformed", path)
	}
	return key, nil
}

func loadOrCreateIdentity(path string) (*age.HybridIdentity, error) {
	text, err := loadOrCreateSecret(path, "media identity", func() (string, error) {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			return "", err
		}
		return "# age identity that encrypts this node's media; keep it with the data\n" + id.String() + "\n", nil
	})
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, err := age.ParseHybridIdentity(line)
		if err != nil {
			return nil, fmt.Errorf("media identity %s is malformed: %w", path, err)
		}
		return id, nil
	}
	return nil, fmt.Errorf("media identity %s holds no identity", path)
}

// loadOrCreateSecret returns the contents of the secret file at path,
// first writing what create returns to it (mode 0600) if it does not
// exist. It refuses a file that others may read.
func loadOrCreateSecret(path, what string, create func() (string, error)) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		text, err := create()
		if err != nil {
			return "", fmt.Errorf("generate %s: %w", what, err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("create data directory: %w", err)
		}
		if err := writeNewFile(path, text); err != nil {
			return "", fmt.Errorf("create %s: %w", what, err)
		}
		b = []byte(text)
	} else if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s %s is readable by others (mode %v); chmod 600 it", what, path, st.Mode().Perm())
	}
	return string(b), nil
}

// Blob describes stored content.
type Blob struct {
	SHA256 string // hex
	Size   int64
}

func (s *Store) path(sum []byte) string {
	m := hmac.New(sha256.New, s.nameKey)
	m.Write(sum)
	name := hex.EncodeToString(m.Sum(nil))
	return filepath.Join(s.dir, name[:2], name[2:4], name)
}

func (s *Store) lock(sha string) func() {
	var i byte
	if len(sha) >= 2 {
		b, _ := hex.DecodeString(sha[:2])
		if len(b) == 1 {
			i = b[0]
		}
	}
	m := &s.locks[int(i)%len(s.locks)]
	m.Lock()
	return m.Unlock
}

// Put stores what r yields, at most limit bytes (more: errTooLarge). With
// the content in place and the content's lock held, it calls commit (if not
// nil), which records the reference to the blob; Remove takes the same
// lock, so a blob is never removed between being written and referenced.
func (s *Store) Put(r io.Reader, limit int64, commit func(Blob) error) (Blob, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return Blob{}, fmt.Errorf("create media file: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w, err := newSealWriter(tmp, s.recipient)
	if err != nil {
		return Blob{}, err
	}
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return Blob{}, fmt.Errorf("store media: %w", err)
	}
	if n > limit {
		return Blob{}, errTooLarge
	}
	sum, err := w.Close()
	if err != nil {
		return Blob{}, fmt.Errorf("store media: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Blob{}, fmt.Errorf("store media: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Blob{}, fmt.Errorf("store media: %w", err)
	}
	b := Blob{SHA256: hex.EncodeToString(sum), Size: n}
	unlock := s.lock(b.SHA256)
	defer unlock()
	dst := s.path(sum)
	if _, err := os.Stat(dst); err != nil {
		// The rename (and any fan-out directory made for it) is durable
		// only once its directory is synced: without this a crash could
		// lose a file whose row is already committed.
		dir := filepath.Dir(dst)
		dirs := []string{dir}
		if _, err := os.Stat(dir); err != nil {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return Blob{}, fmt.Errorf("store media: %w", err)
			}
			dirs = append(dirs, filepath.Dir(dir), s.dir)
		}
		if err := os.Rename(tmp.Name(), dst); err != nil {
			return Blob{}, fmt.Errorf("store media: %w", err)
		}
		keep = true
		for _, d := range dirs {
			if err := syncDir(d); err != nil {
				return Blob{}, fmt.Errorf("store media: %w", err)
			}
		}
	}
	if commit != nil {
		if err := commit(b); err != nil {
			return b, err
		}
	}
	return b, nil
}

// Reader reads stored content; it is an io.ReadSeekCloser.
type Reader interface {
	io.ReadSeekCloser
	Size() int64
}

// Open returns a reader of the content with the given sha256.
func (s *Store) Open(sha string) (Reader, error) {
	sum, err := hex.DecodeString(sha)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("bad content hash %q", sha)
	}
	return openSealed(s.path(sum), s.identity, s.key, sum)
}

// Remove deletes the content with the given sha256 unless inUse reports
// that something still refers to it. It runs under the content's lock.
func (s *Store) Remove(sha string, inUse func() (bool, error)) error {
	sum, err := hex.DecodeString(sha)
	if err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("bad content hash %q", sha)
	}
	unlock := s.lock(sha)
	defer unlock()
	if inUse != nil {
		used, err := inUse()
		if err != nil || used {
			return err
		}
	}
	if err := os.Remove(s.path(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove media file: %w", err)
	}
	return nil
}

// writeNewFile writes text to a new file at path (mode 0600) that appears
// whole or not at all, so a crash while writing it cannot leave an empty
// key that stops the node from starting: the text is written and synced
// under a temporary name, then linked to path, which fails if path exists.
func writeNewFile(path, text string) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(text)
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		return err
	}
	if err := os.Link(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir flushes a directory's entries (a rename into it) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
