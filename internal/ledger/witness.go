package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	sumnote "golang.org/x/mod/sumdb/note"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// WitnessPrefix is where a node's witness is served on the federation
// listener: add-checkpoint (C2SP tlog-witness, X-Matrix authenticated) and
// key, the witness's cosignature key (public).
const WitnessPrefix = "/_matrixos/ledger/v1/witness/"

// MaxWitnessRequestBytes bounds an add-checkpoint request: 63 proof lines
// and a checkpoint with a few signatures take about 4 KiB.
const MaxWitnessRequestBytes = 64 << 10

// maxProofLines is the most consistency proof lines C2SP tlog-witness lets
// a client send.
const maxProofLines = 63

// witnessKeyLabel is the HKDF info that derives the witness key from the
// node's.
const witnessKeyLabel = "matrixos-ledger-witness"

// WitnessName is the name of the witness of the server serverName: the
// name of its cosignature key.
func WitnessName(serverName string) string {
	return serverName + "/matrixos/witness"
}

// DeriveWitnessKey returns the witness's signing key for the node's
// federation signing key: an ed25519 key whose seed is HKDF-SHA256 of the
// node key's seed with the label "matrixos-ledger-witness", so that the
// witness never signs with the key of the node or of its own log.
func DeriveWitnessKey(nodeKey ed25519.PrivateKey) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, nodeKey.Seed(), nil, witnessKeyLabel, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("derive the witness key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// WitnessPublicKey returns the note verifier key of the witness named name
// (C2SP tlog-cosignature: algorithm 0x04, timestamped cosignature/v1) for
// pub, which verifiers of cosigned checkpoints pass to VerifyWitnessed.
func WitnessPublicKey(name string, pub ed25519.PublicKey) (string, error) {
	vkey, err := PublicKey(name, pub)
	if err != nil {
		return "", err
	}
	cosig, err := note.VKeyToCosignatureV1(vkey)
	if err != nil {
		return "", fmt.Errorf("witness key for %q: %w", name, err)
	}
	return cosig, nil
}

// newCosigner returns the cosignature/v1 signer of the witness named name.
func newCosigner(name string, key ed25519.PrivateKey) (*note.Signer, error) {
	vkey, err := PublicKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	// A note signer key: PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>,
	// with the hash of the verifier key.
	hash := vkey[len(name)+1 : len(name)+9]
	skey := "PRIVATE+KEY+" + name + "+" + hash + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...))
	s, err := note.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness signer for %q: %w", name, err)
	}
	return s, nil
}

// AddCheckpointRequest is the body of an add-checkpoint request over
// federation. X-Matrix signs JSON bodies only, so the C2SP tlog-witness
// request travels as a JSON string, beside the log's key, which the
// requesting server vouches for with its X-Matrix signature.
type AddCheckpointRequest struct {
	// LogKey is the note verifier key of the log's checkpoints.
	LogKey string `json:"log_key"`
	// Body is the C2SP tlog-witness add-checkpoint request body: the old
	// size line, the consistency proof lines, an empty line and the
	// checkpoint.
	Body string `json:"add_checkpoint"`
}

// WitnessMigrations are the witness's tables: the latest checkpoint it
// cosigned for each log, and the alerts it raised.
var WitnessMigrations = []storage.Migration{{
	Component: "ledger_witness",
	Version:   1,
	SQL: `
CREATE TABLE ledger_witnessed (
	origin TEXT PRIMARY KEY,
	log_key TEXT NOT NULL,
	size BIGINT NOT NULL,
	root TEXT NOT NULL,
	checkpoint TEXT NOT NULL,
	updated_ts BIGINT NOT NULL
);
CREATE TABLE ledger_alerts (
	alert_id TEXT PRIMARY KEY,
	origin TEXT NOT NULL,
	kind TEXT NOT NULL,
	cosigned TEXT NOT NULL,
	presented TEXT NOT NULL,
	created_ts BIGINT NOT NULL
);
`,
}}

// The kinds of alert a witness raises.
const (
	// AlertSameSizeOtherRoot: a checkpoint of the size the witness last
	// cosigned with another root hash.
	AlertSameSizeOtherRoot = "same_size_other_root"
	// AlertInconsistent: a larger checkpoint whose consistency proof from
	// the one the witness last cosigned does not verify.
	AlertInconsistent = "inconsistent"
	// AlertKeyChanged: a checkpoint, consistent with the one last
	// cosigned, signed by another key than the log's pinned one. The
	// witness cosigns it and pins the new key, but a key changed without
	// notice may also be a stolen or forged one, so people should check.
	AlertKeyChanged = "key_changed"
)

// Summary says in a sentence what the alert means and what the witness
// did about it.
func (a Alert) Summary() string {
	if a.Kind == AlertKeyChanged {
		return fmt.Sprintf("the log %s changed its signing key (the presented checkpoint is signed by another key than the cosigned one, and consistent with it). This node cosigned it and now pins the new key: check with the log's operators that they rotated it.", a.Origin)
	}
	return fmt.Sprintf("the log %s signed two checkpoints that contradict each other, so it showed different histories to different servers or lost entries. This node refused to cosign.", a.Origin)
}

// Alert records two checkpoints of one log, both signed by the log's key,
// that cannot both be true: the log showed different trees to different
// parties (a fork), or lost entries; or (AlertKeyChanged) two checkpoints
// signed by different keys of the log.
type Alert struct {
	ID     string `json:"alert_id"`
	Origin string `json:"origin"`
	Kind   string `json:"kind"`
	// Cosigned is the checkpoint the witness had cosigned.
	Cosigned string `json:"cosigned"`
	// Presented is the checkpoint that contradicts it.
	Presented string `json:"presented"`
	CreatedTS int64  `json:"created_ts"`
}

// Witness cosigns other servers' checkpoints (C2SP tlog-witness and
// tlog-cosignature) after checking that each is consistent with the last
// one it cosigned for that log, which it keeps in the database.
type Witness struct {
	db     *storage.DB
	log    *slog.Logger
	signer *note.Signer
	// PublicKey is the witness's cosignature verifier key.
	PublicKey string
	// OnAlert, when set, is called after a new alert is recorded (the
	// node sends its admins a server notice), at most once per log every
	// alertNoticeInterval.
	OnAlert func(ctx context.Context, a Alert)
	// Peers, when set, returns the servers whose logs the witness
	// cosigns (the node's: those it shares logged rooms with, which it
	// asks to cosign its own); a request from any other server is
	// refused, so a stranger can make the witness keep neither state nor
	// alerts.
	Peers func(ctx context.Context) ([]string, error)

	// mu makes the check of a log's latest cosigned checkpoint and its
	// update one step, as C2SP tlog-witness requires.
	mu     sync.Mutex
	alerts atomic.Int64
	metric prometheus.CounterFunc
	// noticed is when OnAlert was last called for each log (under mu).
	noticed map[string]time.Time
}

// maxAlertsPerLog bounds the alerts kept for one log: a log that forks
// again and again (its key in an attacker's hands, say) cannot fill the
// database; the first ones are the evidence.
const maxAlertsPerLog = 50

// alertNoticeInterval is the least time between two server notices about
// one log's alerts: every alert is logged and kept, but the admins are
// not flooded.
const alertNoticeInterval = time.Hour

// NewWitness returns the witness of the server serverName, which cosigns
// with key (see DeriveWitnessKey).
func NewWitness(ctx context.Context, db *storage.DB, log *slog.Logger, serverName string, key ed25519.PrivateKey) (*Witness, error) {
	name := WitnessName(serverName)
	signer, err := newCosigner(name, key)
	if err != nil {
		return nil, err
	}
	vkey, err := WitnessPublicKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	w := &Witness{db: db, log: log, signer: signer, PublicKey: vkey, noticed: make(map[string]time.Time)}
	var n int64
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM ledger_alerts").Scan(&n); err != nil {
		return nil, fmt.Errorf("count ledger alerts: %w", err)
	}
	w.alerts.Store(n)
	w.metric = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "matrixos_ledger_witness_alerts_total",
		Help: "Forks the ledger witness detected: checkpoints of another server's log inconsistent with one it cosigned (kept across restarts).",
	}, func() float64 { return float64(w.alerts.Load()) })
	return w, nil
}

// Collectors returns the witness's metrics.
func (w *Witness) Collectors() []prometheus.Collector { return []prometheus.Collector{w.metric} }

// witnessError is a refusal with the HTTP status C2SP tlog-witness names.
type witnessError struct {
	status int
	msg    string
	// size is the latest cosigned size a 409 answers.
	size uint64
}

func (e *witnessError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) *witnessError {
	return &witnessError{status: status, msg: fmt.Sprintf(format, args...)}
}

// conflict is the 409 that tells the log the size the witness knows.
func conflict(size uint64, format string, args ...any) *witnessError {
	return &witnessError{status: http.StatusConflict, msg: fmt.Sprintf(format, args...), size: size}
}

// witnessed is what the witness keeps of a log.
type witnessed struct {
	logKey     string
	size       uint64
	root       []byte
	checkpoint string
}

// AddCheckpoint checks a C2SP tlog-witness add-checkpoint request from the
// server server for the log whose key is logKey and answers the witness's
// cosignature line. The log must be server's (its origin is
// EventsOrigin(server)); the checkpoint must be signed by logKey and
// consistent with the last one cosigned for the log, which it then
// replaces, durably, before the cosignature is returned.
func (w *Witness) AddCheckpoint(ctx context.Context, server, logKey string, body []byte) ([]byte, error) {
	old, hashes, raw, err := parseAddCheckpoint(body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "%v", err)
	}
	origin := EventsOrigin(server)
	if name, _, _ := strings.Cut(logKey, "+"); name != origin {
		return nil, refuse(http.StatusForbidden, "the log key %q is not that of %s's log %q", logKey, server, origin)
	}
	cp, err := OpenCheckpoint(raw, logKey)
	if err != nil {
		return nil, refuse(http.StatusForbidden, "%v", err)
	}
	if old > cp.Size {
		return nil, refuse(http.StatusBadRequest, "old size %d is larger than the checkpoint's %d", old, cp.Size)
	}
	if old == 0 && len(hashes) > 0 {
		return nil, refuse(http.StatusBadRequest, "a consistency proof from size 0 must be empty")
	}
	if err := w.checkPeer(ctx, server); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, err := w.latest(ctx, origin)
	if err != nil {
		return nil, err
	}
	if err := w.check(ctx, prev, old, hashes, cp, raw); err != nil {
		return nil, err
	}
	if prev.logKey != "" && prev.logKey != logKey {
		w.alert(ctx, AlertKeyChanged, origin, prev.checkpoint, string(raw))
	}
	if err := w.store(ctx, origin, prev, logKey, cp, raw); err != nil {
		return nil, err
	}
	return w.cosign(raw)
}

// checkPeer refuses server unless Peers names it.
func (w *Witness) checkPeer(ctx context.Context, server string) error {
	if w.Peers == nil {
		return nil
	}
	peers, err := w.Peers(ctx)
	if err != nil {
		return fmt.Errorf("list the servers the witness cosigns for: %w", err)
	}
	if !slices.Contains(peers, server) {
		return refuse(http.StatusForbidden, "%s shares no logged room with this server, so its log is not witnessed here", server)
	}
	return nil
}

// check verifies that the checkpoint cp (raw) follows prev, the latest one
// cosigned, given the old size and consistency proof the log sent; a
// contradiction between two checkpoints the log signed is an alert.
func (w *Witness) check(ctx context.Context, prev witnessed, old uint64, hashes [][]byte, cp *Checkpoint, raw []byte) error {
	if old != prev.size {
		return conflict(prev.size, "the latest checkpoint cosigned for %s has size %d, not %d", cp.Origin, prev.size, old)
	}
	if old == 0 {
		return nil
	}
	if old == cp.Size {
		if !bytes.Equal(prev.root, cp.Root) {
			w.alert(ctx, AlertSameSizeOtherRoot, cp.Origin, prev.checkpoint, string(raw))
			return conflict(prev.size, "fork: a checkpoint of size %d with another root than the one cosigned", old)
		}
		if len(hashes) > 0 {
			return refuse(http.StatusBadRequest, "a consistency proof between equal sizes must be empty")
		}
		return nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, cp.Size, hashes, prev.root, cp.Root); err != nil {
		w.alert(ctx, AlertInconsistent, cp.Origin, prev.checkpoint, string(raw))
		return refuse(http.StatusUnprocessableEntity, "the checkpoint of size %d is not consistent with the one cosigned at size %d: %v", cp.Size, old, err)
	}
	return nil
}

// latest reads what the witness keeps of the log origin (a zero
// witnessed when it never cosigned one).
func (w *Witness) latest(ctx context.Context, origin string) (witnessed, error) {
	var (
		prev witnessed
		size int64
		root string
	)
	err := w.db.QueryRow(ctx, "SELECT log_key, size, root, checkpoint FROM ledger_witnessed WHERE origin = $1", origin).
		Scan(&prev.logKey, &size, &root, &prev.checkpoint)
	if errors.Is(err, errNoRows) {
		return witnessed{}, nil
	}
	if err != nil {
		return witnessed{}, fmt.Errorf("read the witnessed checkpoint of %s: %w", origin, err)
	}
	prev.size = uint64(size)
	if prev.root, err = base64.StdEncoding.DecodeString(root); err != nil {
		return witnessed{}, fmt.Errorf("witnessed root of %s: %w", origin, err)
	}
	return prev, nil
}

// store records cp as the latest checkpoint cosigned for origin, provided
// the stored one is still prev.
func (w *Witness) store(ctx context.Context, origin string, prev witnessed, logKey string, cp *Checkpoint, raw []byte) error {
	root := base64.StdEncoding.EncodeToString(cp.Root)
	return w.db.Write(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO ledger_witnessed (origin, log_key, size, root, checkpoint, updated_ts)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (origin) DO UPDATE SET log_key = excluded.log_key, size = excluded.size, root = excluded.root,
				checkpoint = excluded.checkpoint, updated_ts = excluded.updated_ts
			WHERE ledger_witnessed.size = $7 AND ledger_witnessed.checkpoint = $8`,
			origin, logKey, int64(cp.Size), root, string(raw), time.Now().UnixMilli(), int64(prev.size), prev.checkpoint)
		if err != nil {
			return fmt.Errorf("record the witnessed checkpoint of %s: %w", origin, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("record the witnessed checkpoint of %s: it changed meanwhile", origin)
		}
		return nil
	})
}

// cosign returns the witness's cosignature line of the checkpoint raw.
func (w *Witness) cosign(raw []byte) ([]byte, error) {
	text, _, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		return nil, refuse(http.StatusBadRequest, "the checkpoint has no signature block")
	}
	text = append(text, '\n')
	signed, err := sumnote.Sign(&sumnote.Note{Text: string(text)}, w.signer)
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	return signed[len(text)+1:], nil
}

// alert records a contradiction, or a key change, between two
// checkpoints of the log origin (once: the same two checkpoints again
// raise nothing new; at most maxAlertsPerLog per log), logs it and tells
// OnAlert (at most once per log every alertNoticeInterval). The caller
// holds w.mu.
func (w *Witness) alert(ctx context.Context, kind, origin, cosigned, presented string) {
	sum := sha256.Sum256([]byte(kind + "\n" + origin + "\n" + cosigned + "\n" + presented))
	a := Alert{ID: hex.EncodeToString(sum[:16]), Origin: origin, Kind: kind, Cosigned: cosigned, Presented: presented, CreatedTS: time.Now().UnixMilli()}
	w.log.Error("ledger witness: ALERT: "+a.Summary(),
		"origin", origin, "kind", kind, "alert_id", a.ID, "cosigned", cosigned, "presented", presented)
	var added int64
	err := w.db.Write(ctx, func(tx *storage.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM ledger_alerts WHERE origin = $1", origin).Scan(&n); err != nil {
			return err
		}
		if n >= maxAlertsPerLog {
			return nil
		}
		res, err := tx.Exec(ctx, `INSERT INTO ledger_alerts (alert_id, origin, kind, cosigned, presented, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (alert_id) DO NOTHING`,
			a.ID, a.Origin, a.Kind, a.Cosigned, a.Presented, a.CreatedTS)
		if err != nil {
			return err
		}
		added, err = res.RowsAffected()
		return err
	})
	if err != nil {
		w.log.Error("ledger witness: record the alert", "alert_id", a.ID, "err", err)
		return
	}
	if added == 0 {
		return
	}
	w.alerts.Add(1)
	if w.OnAlert == nil || time.Since(w.noticed[origin]) < alertNoticeInterval {
		return
	}
	w.noticed[origin] = time.Now()
	w.OnAlert(context.WithoutCancel(ctx), a)
}

// Alerts returns the alerts raised so far, oldest first.
func (w *Witness) Alerts(ctx context.Context) ([]Alert, error) {
	rows, err := w.db.Query(ctx, "SELECT alert_id, origin, kind, cosigned, presented, created_ts FROM ledger_alerts ORDER BY created_ts, alert_id")
	if err != nil {
		return nil, fmt.Errorf("list ledger alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		if err := rows.Scan(&a.ID, &a.Origin, &a.Kind, &a.Cosigned, &a.Presented, &a.CreatedTS); err != nil {
			return nil, fmt.Errorf("list ledger alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// parseAddCheckpoint splits a C2SP tlog-witness add-checkpoint body into
// the old size, the consistency proof and the checkpoint.
func parseAddCheckpoint(body []byte) (old uint64, hashes [][]byte, checkpoint []byte, err error) {
	head, checkpoint, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return 0, nil, nil, errors.New("no empty line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	n, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return 0, nil, nil, fmt.Errorf("the first line %q is not \"old SIZE\"", lines[0])
	}
	if old, err = strconv.ParseUint(n, 10, 64); err != nil || strconv.FormatUint(old, 10) != n {
		return 0, nil, nil, fmt.Errorf("old size %q is not a decimal without leading zeroes", n)
	}
	if len(lines)-1 > maxProofLines {
		return 0, nil, nil, fmt.Errorf("%d consistency proof lines, at most %d", len(lines)-1, maxProofLines)
	}
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != sha256.Size {
			return 0, nil, nil, fmt.Errorf("consistency proof line %q is not a base64 hash", l)
		}
		hashes = append(hashes, h)
	}
	return old, hashes, checkpoint, nil
}

// AddCheckpointHandler serves add-checkpoint to servers authenticated by
// X-Matrix: origin returns the server that signed the request.
func (w *Witness) AddCheckpointHandler(origin func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var req AddCheckpointRequest
		if err := mxhttp.DecodeJSON(r, &req); err != nil {
			mxhttp.WriteError(rw, r, err)
			return
		}
		sigs, err := w.AddCheckpoint(r.Context(), origin(r), req.LogKey, []byte(req.Body))
		var we *witnessError
		switch {
		case errors.As(err, &we) && we.status == http.StatusConflict:
			rw.Header().Set("Content-Type", "text/x.tlog.size")
			rw.WriteHeader(http.StatusConflict)
			fmt.Fprintf(rw, "%d\n", we.size)
		case errors.As(err, &we):
			code := "M_FORBIDDEN"
			if we.status != http.StatusForbidden {
				code = "M_INVALID_PARAM"
			}
			mxhttp.WriteError(rw, r, &mxhttp.Error{Status: we.status, Code: code, Message: we.msg})
		case err != nil:
			w.log.Error("ledger witness: add-checkpoint", "origin", origin(r), "err", err)
			mxhttp.WriteError(rw, r, mxhttp.Unknown("the witness could not record the checkpoint"))
		default:
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rw.Write(sigs)
		}
	})
}

// KeyHandler serves the witness's cosignature verifier key.
func (w *Witness) KeyHandler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Header().Set("Cache-Control", "public, max-age=3600")
		rw.Write([]byte(w.PublicKey + "\n"))
	})
}
