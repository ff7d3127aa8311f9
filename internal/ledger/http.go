package ledger

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
)

// TilesPrefix is where the events log is served as C2SP tlog-tiles: its
// checkpoint, tiles and entry bundles, and its note key at key.
const TilesPrefix = "/_matrixos/ledger/v1/events/"

// ProofPath is the client API endpoint that answers an event's proof
// bundle to a user who may see the event.
const ProofPath = "/_matrix/client/unstable/org.matrixos.ledger/rooms/{roomId}/proof/{eventId}"

// proofWait is how long a proof request waits for a checkpoint to cover a
// freshly logged event.
const proofWait = 3 * time.Second

// Routes serves the log read-only (to server admins unless
// Options.Public: the entries name rooms and events), the proof
// endpoint to room members and the admin endpoint that turns a room's
// ledger on or off to server admins.
func (l *Log) Routes(mux *http.ServeMux, acc *accounts.Service, engine *rooms.Engine) {
	tiles := serveTiles(l.opts.Dir, l.PublicKey, l.log)
	if !l.opts.Public {
		tiles = adminsOnly(acc, tiles)
	}
	mux.HandleFunc("GET "+TilesPrefix+"{path...}", tiles)
	mux.Handle("GET "+ProofPath, acc.Auth(func(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
		return l.serveProof(r, sess, engine)
	}))
	l.adminRoutes(mux, acc, engine)
}

// serveTiles serves the log in dir: the checkpoint (never cached for
// long: it moves), a tile or an entry bundle (immutable: a path names one
// content forever, a partial tile included), or the log's key.
func serveTiles(dir, vkey string, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := r.PathValue("path")
		switch {
		case p == "key":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "public, max-age=3600")
			w.Write([]byte(vkey + "\n"))
			return
		case p == layout.CheckpointPath || p == WitnessedCheckpointPath:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
		case canonicalTilePath(p):
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		default:
			mxhttp.WriteError(w, r, mxhttp.NotFound("no such ledger resource"))
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if errors.Is(err, os.ErrNotExist) {
			w.Header().Del("Cache-Control")
			mxhttp.WriteError(w, r, mxhttp.NotFound("no such ledger resource"))
			return
		}
		if err != nil {
			w.Header().Del("Cache-Control")
			log.Error("ledger: read tile", "path", p, "err", err)
			mxhttp.WriteError(w, r, mxhttp.Unknown("cannot read the ledger"))
			return
		}
		w.Write(b)
	}
}

// adminsOnly serves the log's checkpoint and tiles only to server admins:
// the entries name the room and event IDs of every logged room, so any
// local account could otherwise learn who talks where and when. The log's
// key, which tells nothing of the rooms, stays public so that anyone can
// check a proof bundle.
func adminsOnly(acc *accounts.Service, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("path") != "key" {
			sess, err := acc.AuthenticateRequest(r)
			if err != nil {
				mxhttp.WriteError(w, r, err)
				return
			}
			if !sess.IsAdmin {
				mxhttp.WriteError(w, r, mxhttp.Forbidden("the ledger's tiles are served to server admins only (ledger_public serves them to anyone)"))
				return
			}
		}
		next(w, r)
	}
}

// canonicalTilePath reports whether p is a tile or entry bundle path as
// C2SP tlog-tiles writes it (which also rules out anything that leaves the
// log's directory).
func canonicalTilePath(p string) bool {
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return false
	}
	if n, ok := strings.CutPrefix(rest, "entries/"); ok {
		idx, w, err := layout.ParseTileIndexPartial(n)
		return err == nil && layout.EntriesPath(idx, w) == p
	}
	level, n, ok := strings.Cut(rest, "/")
	if !ok {
		return false
	}
	l, idx, w, err := layout.ParseTileLevelIndexPartial(level, n)
	return err == nil && layout.TilePath(l, idx, w) == p
}

// serveProof answers the proof bundle of an event of the room to a user
// who may see it; an event the user cannot see is as unknown as one that
// does not exist.
func (l *Log) serveProof(r *http.Request, sess *accounts.Session, engine *rooms.Engine) (any, error) {
	ctx := r.Context()
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	eventID := id.EventID(r.PathValue("eventId"))
	ev, err := engine.Event(ctx, eventID)
	if err != nil || ev == nil || ev.RoomID != roomID || ev.Pos == 0 {
		return nil, mxhttp.NotFound("event %s not found in %s", eventID, roomID)
	}
	vis, err := engine.Visibility(ctx, roomID, sess.UserID)
	if err != nil {
		return nil, err
	}
	if !vis.CanSee(ev) {
		return nil, mxhttp.NotFound("event %s not found in %s", eventID, roomID)
	}
	b, err := l.proveWhenCheckpointed(ctx, ev)
	switch {
	case errors.Is(err, ErrBackfilled):
		return nil, mxhttp.NotFound("event %s is not in the ledger: %v", eventID, err)
	case errors.Is(err, ErrNotLogged):
		return nil, mxhttp.NotFound("event %s is not in the ledger (the room's ledger was off, or the event is not appended yet)", eventID)
	case errors.Is(err, ErrNotCheckpointed):
		return nil, mxhttp.NotFound("event %s is not in a signed checkpoint yet; ask again in a second", eventID)
	case err != nil:
		return nil, err
	}
	return b, nil
}

// proveWhenCheckpointed proves an event, waiting a little for the follower
// to append it (unless it has read past it) and for a checkpoint to cover
// it.
func (l *Log) proveWhenCheckpointed(ctx context.Context, ev *rooms.Event) (*Bundle, error) {
	ctx, cancel := context.WithTimeout(ctx, proofWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := l.prover.Prove(ctx, string(ev.ID))
		if err == nil && !b.Cosigned() && l.witnessed() {
			// Witnesses cosign the log's checkpoints within a second or
			// two: wait for one that covers the event, else answer
			// this one.
			select {
			case <-ctx.Done():
				return b, nil
			case <-tick.C:
				continue
			}
		}
		if !errors.Is(err, ErrNotLogged) && !errors.Is(err, ErrNotCheckpointed) {
			return b, err
		}
		if errors.Is(err, ErrNotLogged) && l.scanned.Load() >= ev.Pos {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-tick.C:
		}
	}
}

// witnessed reports whether witnesses have cosigned a checkpoint of the
// log.
func (l *Log) witnessed() bool {
	_, err := os.Stat(filepath.Join(l.opts.Dir, WitnessedCheckpointPath))
	return err == nil
}
