package rooms

import (
	"context"
	"fmt"
	"regexp"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// Purge removes a room from the node: its events, state snapshots,
// memberships, transaction IDs, local aliases, partial-state mark and the
// room itself, from the
// database and from memory. Senders waiting on the room when it is purged
// fail authorisation (the room has no state left). Make the members leave
// first if their clients should learn about it through /sync.
func (e *Engine) Purge(ctx context.Context, roomID id.RoomID) error {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err = e.db.Write(ctx, func(tx *storage.Tx) error {
		// The hooks run first, while the room's events are still there:
		// tables with no index by room find the room's rows through them.
		for _, h := range e.OnPurge {
			if err := h(ctx, tx, roomID); err != nil {
				return fmt.Errorf("purge room %s: %w", roomID, err)
			}
		}
		for _, q := range []string{
			"DELETE FROM transactions WHERE event_id IN (SELECT event_id FROM events WHERE room_id = $1)",
			"DELETE FROM state_snapshot_entries WHERE snapshot_id IN (SELECT snapshot_id FROM state_snapshots WHERE room_id = $1)",
			"DELETE FROM state_snapshots WHERE room_id = $1",
			"DELETE FROM events WHERE room_id = $1",
			"DELETE FROM outlier_events WHERE room_id = $1",
			"DELETE FROM auth_edges WHERE room_id = $1",
			"DELETE FROM pending_redactions WHERE room_id = $1",
			"DELETE FROM awaiting_auth WHERE room_id = $1",
			"DELETE FROM invite_state WHERE room_id = $1",
			"DELETE FROM memberships WHERE room_id = $1",
			"DELETE FROM room_aliases WHERE room_id = $1",
			"DELETE FROM partial_state_rooms WHERE room_id = $1",
			"DELETE FROM partial_state_completed WHERE room_id = $1",
			"DELETE FROM partial_redacted WHERE room_id = $1",
			"DELETE FROM rooms WHERE room_id = $1",
		} {
			if _, err := tx.Exec(ctx, q, roomID); err != nil {
				return fmt.Errorf("purge room %s: %w", roomID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.purgedMemberships()
	e.committed.dropRoom(roomID)
	// Leave the in-memory room empty so that anyone still holding it
	// cannot append to it, then forget it.
	r.head, r.txns = emptyState, map[string]*pendingTxn{}
	r.partial.Store(nil) // a running resync gives up
	r.viewMu.Lock()
	r.cur, r.purged = emptyState, true
	r.viewMu.Unlock()
	e.mu.Lock()
	if e.rooms[roomID] == r {
		delete(e.rooms, roomID)
	}
	for _, rs := range e.members {
		delete(rs, roomID)
	}
	e.mu.Unlock()
	e.graphs.drop(roomID)
	e.cache.mu.Lock()
	for evID, ev := range e.cache.m {
		if ev.RoomID == roomID {
			delete(e.cache.m, evID)
		}
	}
	e.cache.mu.Unlock()
	e.log.Info("room purged", "room_id", roomID)
	return nil
}

// RoomRecord is a room's row: what the node knows without loading state.
type RoomRecord struct {
	ID        id.RoomID
	Version   id.RoomVersion
	Creator   id.UserID
	CreatedTS int64
	// Published is whether the room is in the public room directory.
	Published bool
}

// RoomRecords lists every room the node knows, ordered by room ID.
func (e *Engine) RoomRecords(ctx context.Context) ([]RoomRecord, error) {
	rows, err := e.db.Query(ctx, "SELECT room_id, version, creator, created_ts, published FROM rooms ORDER BY room_id")
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	var out []RoomRecord
	for rows.Next() {
		var rr RoomRecord
		if err := rows.Scan(&rr.ID, &rr.Version, &rr.Creator, &rr.CreatedTS, &rr.Published); err != nil {
			return nil, fmt.Errorf("list rooms: %w", err)
		}
		out = append(out, rr)
	}
	return out, rows.Err()
}

// LocalAliases lists the room's aliases on this server.
func (e *Engine) LocalAliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
	rows, err := e.db.Query(ctx, "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias", roomID)
	if err != nil {
		return nil, fmt.Errorf("list aliases: %w", err)
	}
	defer rows.Close()
	out := []id.RoomAlias{}
	for rows.Next() {
		var a id.RoomAlias
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ResolveAlias returns the room a local alias points to ("" if none).
func (e *Engine) ResolveAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, error) {
	rows, err := e.db.Query(ctx, "SELECT room_id FROM room_aliases WHERE alias = $1", alias)
	if err != nil {
		return "", fmt.Errorf("resolve alias: %w", err)
	}
	defer rows.Close()
	var roomID id.RoomID
	if rows.Next() {
		if err := rows.Scan(&roomID); err != nil {
			return "", err
		}
	}
	return roomID, rows.Err()
}

var mxcRE = regexp.MustCompile(`mxc://[A-Za-z0-9.:\-\[\]]+/[A-Za-z0-9_\-]+`)

// MediaURIs lists the distinct mxc:// URIs that the room's events mention
// (attachments, thumbnails, avatars), sorted.
func (e *Engine) MediaURIs(ctx context.Context, roomID id.RoomID) ([]string, error) {
	rows, err := e.db.Query(ctx, "SELECT json FROM events WHERE room_id = $1 AND json LIKE '%mxc://%'", roomID)
	if err != nil {
		return nil, fmt.Errorf("scan room media: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		for _, m := range mxcRE.FindAllString(raw, -1) {
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out, rows.Err()
}
