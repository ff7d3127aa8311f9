package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/formats/note"
	sumnote "golang.org/x/mod/sumdb/note"
	"maunium.net/go/mautrix/id"
)

// WitnessedCheckpointPath is, in the log's directory and under
// TilesPrefix, the latest checkpoint that other servers' witnesses
// cosigned: the checkpoint note with their cosignature lines added.
const WitnessedCheckpointPath = "checkpoint.witnessed"

const (
	// cosignInterval is how often the log asks its witnesses to cosign
	// its latest checkpoint (when it changed, or a witness has not
	// cosigned it yet).
	cosignInterval = time.Second
	// cosignTimeout bounds one witness's answer.
	cosignTimeout = 10 * time.Second
	// cosignParallel is how many witnesses are asked at once.
	cosignParallel = 8
	// maxCosignBackoff is the longest a witness that failed waits before
	// it is asked again.
	maxCosignBackoff = 5 * time.Minute
	// peersInterval is how long the list of servers to ask is kept
	// before it is read again from the ledger rooms' members.
	peersInterval = 10 * time.Second
	// noWitnessBackoff is how long a server that serves no witness (not
	// a Matrix OS node) waits before it is asked again.
	noWitnessBackoff = time.Hour
)

// ErrNoWitness answers a server that serves no witness (a WitnessClient
// returns it, wrapped, when a server answers 404 or 405).
var ErrNoWitness = errors.New("the server serves no ledger witness")

// WitnessClient reaches other servers' witnesses (over federation, in
// the node).
type WitnessClient interface {
	// AddCheckpoint posts an add-checkpoint request to server's witness
	// and returns the answer's status and body; err is for a request
	// that got no answer.
	AddCheckpoint(ctx context.Context, server string, req AddCheckpointRequest) (status int, body []byte, err error)
	// WitnessKey returns the cosignature verifier key server's witness
	// publishes (ErrNoWitness when it serves none).
	WitnessKey(ctx context.Context, server string) (string, error)
}

// Cosigner asks the servers the log shares ledger rooms with to witness
// its checkpoints and publishes the latest cosigned one.
type Cosigner struct {
	log    *slog.Logger
	prover *Prover
	dir    string
	peers  func(ctx context.Context) ([]string, error)
	client WitnessClient

	// peersList, read at peersAt, is peers' last answer; only Round
	// uses them.
	peersList []string
	peersAt   time.Time

	mu        sync.Mutex
	witnesses map[string]*peerWitness
	// current is the checkpoint being cosigned and sigs the cosignature
	// lines gathered for it, by server.
	current []byte
	sigs    map[string]string
}

// peerWitness is what the log knows of another server's witness.
type peerWitness struct {
	// key is its cosignature verifier key, fetched once.
	key string
	// size is the size of the latest checkpoint it cosigned, as far as
	// the log knows (a 409 tells it otherwise).
	size     uint64
	failures int
	retryAt  time.Time
}

// StartCosigning has the log's checkpoints cosigned by the witnesses of
// the servers peers returns, through client, until Close.
func (l *Log) StartCosigning(peers func(ctx context.Context) ([]string, error), client WitnessClient) *Cosigner {
	c := &Cosigner{
		log: l.log, prover: l.prover, dir: l.opts.Dir, peers: peers, client: client,
		witnesses: map[string]*peerWitness{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cosignInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := c.Round(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("ledger: ask witnesses to cosign", "err", err)
			}
		}
	}()
	l.stopCosigner = func() {
		cancel()
		<-done
	}
	return c
}

// LedgerRooms returns the rooms whose events the log holds now: every
// room the node knows with the setting ledger: all, else those with the
// ledger on.
func (l *Log) LedgerRooms(ctx context.Context, all func(context.Context) ([]id.RoomID, error)) ([]id.RoomID, error) {
	if l.opts.All {
		return all(ctx)
	}
	rows, err := l.db.Query(ctx, "SELECT room_id FROM ledger_rooms WHERE enabled ORDER BY room_id")
	if err != nil {
		return nil, fmt.Errorf("list ledger rooms: %w", err)
	}
	defer rows.Close()
	var out []id.RoomID
	for rows.Next() {
		var r id.RoomID
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("list ledger rooms: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Round asks every witness that has not cosigned the latest checkpoint
// yet (and is not waiting after a failure) to cosign it, at most
// cosignParallel at once, and publishes the checkpoint with the
// cosignatures gathered when it got new ones.
func (c *Cosigner) Round(ctx context.Context) error {
	raw, cp, err := c.prover.Checkpoint(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if cp.Size == 0 {
		return nil
	}
	if time.Since(c.peersAt) > peersInterval {
		peers, err := c.peers(ctx)
		if err != nil {
			return err
		}
		c.peersList, c.peersAt = peers, time.Now()
	}
	due := c.due(raw, c.peersList)
	if len(due) == 0 {
		return nil
	}
	lines := make([]string, len(due))
	sem := make(chan struct{}, cosignParallel)
	var wg sync.WaitGroup
	for i, server := range due {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, cosignTimeout)
			defer cancel()
			line, err := c.cosignWith(rctx, server, raw, cp)
			if failures := c.done(server, err); failures == 1 {
				c.log.Warn("ledger: a witness did not cosign; asking it again later, less and less often", "server", server, "size", cp.Size, "err", err)
			} else if err != nil {
				c.log.Debug("ledger: a witness did not cosign", "server", server, "size", cp.Size, "failures", failures, "err", err)
			}
			if err != nil {
				return
			}
			lines[i] = line
		})
	}
	wg.Wait()
	return c.gather(raw, due, lines)
}

// due returns the peers to ask for the checkpoint raw, which becomes the
// current one.
func (c *Cosigner) due(raw []byte, peers []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !bytes.Equal(raw, c.current) {
		c.current, c.sigs = raw, map[string]string{}
	}
	now := time.Now()
	var due []string
	for _, server := range peers {
		if _, ok := c.sigs[server]; ok {
			continue
		}
		if w := c.witnesses[server]; w != nil && now.Before(w.retryAt) {
			continue
		}
		due = append(due, server)
	}
	return due
}

// done records how asking server went, for its backoff, and returns how
// many times in a row it failed.
func (c *Cosigner) done(server string, err error) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.witness(server)
	if err == nil {
		w.failures, w.retryAt = 0, time.Time{}
		return 0
	}
	w.failures++
	wait := min(time.Second<<min(w.failures, 20), maxCosignBackoff)
	if errors.Is(err, ErrNoWitness) {
		wait = noWitnessBackoff
	}
	w.retryAt = time.Now().Add(wait)
	return w.failures
}

// witness returns what the log knows of server's witness; c.mu is held.
func (c *Cosigner) witness(server string) *peerWitness {
	w := c.witnesses[server]
	if w == nil {
		w = &peerWitness{}
		c.witnesses[server] = w
	}
	return w
}

// gather adds the cosignature lines got for raw and publishes raw with all
// those gathered for it.
func (c *Cosigner) gather(raw []byte, servers, lines []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !bytes.Equal(raw, c.current) {
		return nil // a later round moved on
	}
	added := false
	for i, line := range lines {
		if line != "" {
			c.sigs[servers[i]] = line
			added = true
		}
	}
	if !added {
		return nil
	}
	witnessed := slices.Clone(raw)
	for _, server := range slices.Sorted(maps.Keys(c.sigs)) {
		witnessed = append(witnessed, c.sigs[server]...)
	}
	return writeFileAtomic(filepath.Join(c.dir, WitnessedCheckpointPath), witnessed)
}

// cosignWith asks server's witness to cosign the checkpoint raw and
// returns its cosignature line, checked with its key.
func (c *Cosigner) cosignWith(ctx context.Context, server string, raw []byte, cp *Checkpoint) (string, error) {
	key, err := c.witnessKey(ctx, server)
	if err != nil {
		return "", err
	}
	for try := 0; ; try++ {
		c.mu.Lock()
		old := c.witness(server).size
		c.mu.Unlock()
		body, err := c.request(ctx, old, raw, cp)
		if err != nil {
			return "", err
		}
		status, answer, err := c.client.AddCheckpoint(ctx, server, AddCheckpointRequest{LogKey: c.prover.key, Body: string(body)})
		if err != nil {
			return "", err
		}
		switch {
		case status == http.StatusConflict && try == 0:
			size, err := strconv.ParseUint(strings.TrimSpace(string(answer)), 10, 64)
			if err != nil {
				return "", fmt.Errorf("409 without a size: %q", answer)
			}
			c.mu.Lock()
			c.witness(server).size = size
			c.mu.Unlock()
			continue
		case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
			return "", fmt.Errorf("%w (add-checkpoint answered %d)", ErrNoWitness, status)
		case status != http.StatusOK:
			return "", fmt.Errorf("add-checkpoint answered %d: %.200s", status, answer)
		}
		line, err := cosignatureLine(raw, answer, key, WitnessName(server))
		if err != nil {
			return "", err
		}
		c.mu.Lock()
		c.witness(server).size = cp.Size
		c.mu.Unlock()
		return line, nil
	}
}

// witnessKey returns server's witness key, fetched on first use.
func (c *Cosigner) witnessKey(ctx context.Context, server string) (string, error) {
	c.mu.Lock()
	key := c.witness(server).key
	c.mu.Unlock()
	if key != "" {
		return key, nil
	}
	key, err := c.client.WitnessKey(ctx, server)
	if err != nil {
		return "", fmt.Errorf("witness key: %w", err)
	}
	key = strings.TrimSpace(key)
	if name, _, _ := strings.Cut(key, "+"); name != WitnessName(server) {
		return "", fmt.Errorf("witness key %q is not named %s", key, WitnessName(server))
	}
	if _, err := note.NewVerifierForCosignatureV1(key); err != nil {
		return "", fmt.Errorf("witness key %q: %w", key, err)
	}
	c.mu.Lock()
	c.witness(server).key = key
	c.mu.Unlock()
	return key, nil
}

// request builds the add-checkpoint body for the checkpoint raw from the
// size old.
func (c *Cosigner) request(ctx context.Context, old uint64, raw []byte, cp *Checkpoint) ([]byte, error) {
	if old > cp.Size {
		return nil, fmt.Errorf("the witness cosigned size %d, larger than the log's checkpoint (%d)", old, cp.Size)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	if old > 0 && old < cp.Size {
		hashes, err := c.prover.ConsistencyProof(ctx, old, cp.Size)
		if err != nil {
			return nil, err
		}
		for _, h := range hashes {
			b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
		}
	}
	b.WriteString("\n")
	b.Write(raw)
	return b.Bytes(), nil
}

// cosignatureLine checks the witness's answer: a cosignature of the
// checkpoint raw by key, named name, whose line it returns.
func cosignatureLine(raw, answer []byte, key, name string) (string, error) {
	v, err := note.NewVerifierForCosignatureV1(key)
	if err != nil {
		return "", fmt.Errorf("witness key %q: %w", key, err)
	}
	n, err := sumnote.Open(append(slices.Clone(raw), answer...), sumnote.VerifierList(v))
	if err != nil {
		return "", fmt.Errorf("the witness's answer is not its cosignature of the checkpoint: %w", err)
	}
	for _, s := range n.Sigs {
		if s.Name == name {
			return "— " + s.Name + " " + s.Base64 + "\n", nil
		}
	}
	return "", errors.New("the witness's answer has no cosignature of the checkpoint")
}

// writeFileAtomic replaces path with data: a reader sees the old file or
// the new one, whole.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".witnessed-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
