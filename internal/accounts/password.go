package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"golang.org/x/crypto/argon2"
)

// argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes,
// 1 lane), which keeps a login affordable on a Raspberry Pi. Stored hashes
// carry their parameters, so these can be raised later.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// hashSlots bounds how many argon2 computations run at once, so a burst of
// logins or registrations holds at most len(hashSlots) × argonMemory of
// hash memory: as many as the cores can run, fewer where memory is short
// (hashSlotCount).
var hashSlots = make(chan struct{}, hashSlotCount(hashMemoryBudget(), runtime.GOMAXPROCS(0)))

// hashMemoryShare is the part of the machine's memory (or of the Go memory
// limit, when one is set and lower) that concurrent password hashes may
// hold.
const hashMemoryShare = 16

// hashMemoryBudget returns the bytes that concurrent password hashes may
// hold: a sixteenth of the machine's memory or of the Go memory limit,
// whichever is lower; 0 when neither is known.
func hashMemoryBudget() int64 {
	budget := physicalMemory()
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit < math.MaxInt64 && (budget == 0 || limit < budget) {
		budget = limit
	}
	return budget / hashMemoryShare
}

// physicalMemory returns the machine's memory in bytes from /proc/meminfo,
// or 0 where that cannot be read.
func physicalMemory() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kib * 1024
	}
	return 0
}

// hashSlotCount returns how many hashes may run at once with budget bytes
// for them and procs cores: one per core, at most budget / argonMemory,
// at least one; two when the budget is unknown (0).
func hashSlotCount(budget int64, procs int) int {
	n := int64(procs)
	if budget <= 0 {
		n = min(n, 2)
	} else {
		n = min(n, budget/(argonMemory*1024))
	}
	return int(max(n, 1))
}

// freeIdle is how long password hashing must have been idle before the
// hashes' memory is handed back to the operating system.
const freeIdle = 2 * time.Second

// freeAfterIdle hands the hashes' memory back (debug.FreeOSMemory) once
// no hash has run for freeIdle; each burst's end starts it again.
var freeAfterIdle = time.AfterFunc(time.Duration(math.MaxInt64), func() {
	if hashesRunning.Load() == 0 {
		debug.FreeOSMemory()
	}
})

// argonKey runs argon2id in one of the hash slots. It does not collect
// garbage first: a forced collection marks the node's whole heap, which
// cost more CPU than the hash itself in a node with a large heap, while
// the slots already bound the hash memory alive at once and the garbage
// collector's pacing bounds what dead hashes leave. After a burst of
// hashes has been idle for freeIdle their memory is handed back to the
// operating system (Go's scavenger would return it only slowly, keeping
// the node's RSS high), once per burst rather than once per hash.
func argonKey(password, salt []byte, t, m uint32, p uint8, n uint32) []byte {
	hashSlots <- struct{}{}
	hashesRunning.Add(1)
	defer func() {
		<-hashSlots
		if hashesRunning.Add(-1) == 0 {
			freeAfterIdle.Reset(freeIdle)
		}
	}()
	return argon2.IDKey(password, salt, t, m, p, n)
}

// newSalt returns a password hash's random salt.
func newSalt() ([]byte, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("read salt: %w", err)
	}
	return salt, nil
}

// formatHash writes an argon2id key with the current parameters in the
// PHC form stored.
func formatHash(salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// maxPasswordLen bounds a password in bytes, so hashing stays cheap.
const maxPasswordLen = 512

// CheckPasswordLength returns M_INVALID_PARAM for a password too long to
// accept.
func CheckPasswordLength(password string) error {
	if len(password) > maxPasswordLen {
		return mxhttp.InvalidParam("password too long")
	}
	return nil
}

// hashesRunning counts the argon2 computations in progress.
var hashesRunning atomic.Int32

// HashPassword returns a PHC-formatted argon2id hash of password.
func HashPassword(password string) (string, error) {
	salt, err := newSalt()
	if err != nil {
		return "", err
	}
	key := argonKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return formatHash(salt, key), nil
}

var errBadHash = errors.New("unsupported password hash")

// CheckPassword reports whether password matches the PHC-formatted hash.
func CheckPassword(hash, password string) (bool, error) {
	a, err := parseArgon2(hash)
	if err != nil {
		return false, err
	}
	got := argonKey([]byte(password), a.salt, a.t, a.m, a.p, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(got, a.key) == 1, nil
}

// argon2Hash is a parsed PHC argon2id string.
type argon2Hash struct {
	m, t      uint32
	p         uint8
	salt, key []byte
}

// parseArgon2 reads "$argon2id$v=19$m=…,t=…,p=…$salt$key" strictly, and
// refuses parameters that argon2 cannot run (it panics on t or p of 0) or
// that would exhaust the machine.
func parseArgon2(hash string) (*argon2Hash, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, errBadHash
	}
	var a argon2Hash
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &a.m, &a.t, &a.p); err != nil ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", a.m, a.t, a.p) {
		return nil, errBadHash
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil {
		return nil, errBadHash
	}
	if a.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil {
		return nil, errBadHash
	}
	if a.m > 1<<20 || a.t == 0 || a.t > 16 || a.p == 0 || len(a.salt) < 8 || len(a.key) < 16 || len(a.key) > 64 {
		return nil, errBadHash
	}
	return &a, nil
}
