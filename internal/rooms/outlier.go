package rooms

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/storage"
)

// The kinds of events kept beside the timeline, in outlier_events.
const (
	// kindOutlier is an event known without its place in the timeline: the
	// state and auth chain of a room joined over federation. It may be
	// state and an auth event.
	kindOutlier = "outlier"
	// kindRejected is an event refused by the auth rules on receipt. It is
	// kept so it is not fetched and checked again, and never serves as an
	// auth event or state.
	kindRejected = "rejected"
	// kindSoftFailed is an event allowed by the state before it but not by
	// the room's current state: it is never shown to clients, never
	// becomes a prev_event, but may be an auth event.
	kindSoftFailed = "soft_failed"
)

// storeOutlier records ev beside the timeline, inside the writer's
// transaction; an event already there keeps its first record.
func storeOutlier(ctx context.Context, tx *storage.Tx, ev *Event, kind, reason string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO outlier_events (event_id, room_id, kind, type, state_key, sender, depth, origin_ts, json,
		snapshot_before, reason, received_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`,
		ev.ID, ev.RoomID, kind, ev.Type, ev.StateKey, ev.Sender, ev.Depth, ev.TS, string(ev.JSON),
		ev.SnapshotBefore, reason, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store %s event %s: %w", kind, ev.ID, err)
	}
	return insertEventAuthEdges(ctx, tx, ev.RoomID, ev)
}

// storeOutliers is storeOutlier for many events, in multi-row inserts
// (a joined room's state and auth chain: thousands of events).
func storeOutliers(ctx context.Context, tx *storage.Tx, evs []*Event, kind string) error {
	if err := insertAuthEdges(ctx, tx, stateAuthEdges(evs)); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	return insertRows(evs, 12, func(part []*Event, values string) error {
		args := make([]any, 0, len(part)*12)
		for _, ev := range part {
			args = append(args, ev.ID, ev.RoomID, kind, ev.Type, ev.StateKey, ev.Sender, ev.Depth, ev.TS, string(ev.JSON),
				ev.SnapshotBefore, "", now)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outlier_events (event_id, room_id, kind, type, state_key, sender, depth, origin_ts, json,
			snapshot_before, reason, received_ts) VALUES `+values+` ON CONFLICT DO NOTHING`, args...); err != nil {
			return fmt.Errorf("store %d %s events: %w", len(part), kind, err)
		}
		return nil
	})
}

// maxRowsPerInsert bounds the rows of one multi-row INSERT.
const maxRowsPerInsert = 128

// insertRows calls insert for rows in parts of at most maxRowsPerInsert,
// each with the VALUES list of its size for cols columns: full parts,
// then parts of falling powers of two, so that a few statement texts
// serve every count.
func insertRows[T any](rows []T, cols int, insert func(part []T, values string) error) error {
	for n := maxRowsPerInsert; len(rows) > 0; n /= 2 {
		for len(rows) >= n {
			if err := insert(rows[:n], valueRows(n, cols)); err != nil {
				return err
			}
			rows = rows[n:]
		}
	}
	return nil
}

// valueRows is a VALUES list of n rows of cols placeholders: ($1, $2),
// ($3, $4), ...
func valueRows(n, cols int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		b.WriteString(placeholders(1+i*cols, cols))
		b.WriteString(")")
	}
	return b.String()
}

// recordOutside stores one event beside the timeline on its own write.
func (e *Engine) recordOutside(ctx context.Context, ev *Event, kind, reason string) error {
	return e.db.Write(ctx, func(tx *storage.Tx) error { return storeOutlier(ctx, tx, ev, kind, reason) })
}

// outliers loads events kept beside the timeline: outliers and
// soft-failed events (flagged SoftFailed), which may be state (a state
// resolution may pick a soft-failed event), and rejected ones (flagged
// Rejected) when all is set.
func (e *Engine) outliers(ctx context.Context, ids []id.EventID, all bool) ([]*Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []*Event
	err := inChunks(ids, func(part []id.EventID) error {
		w := "event_id IN (" + placeholders(1, len(part)) + ")"
		if !all {
			w += " AND kind <> 'rejected'"
		}
		rows, err := e.db.Query(ctx, `SELECT event_id, room_id, kind, type, state_key, sender, depth, origin_ts, json, snapshot_before
			FROM outlier_events WHERE `+w, anySlice(part)...)
		if err != nil {
			return fmt.Errorf("query outliers: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			ev, err := scanOutlier(rows)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return rows.Err()
	})
	return out, err
}

func scanOutlier(rows *sql.Rows) (*Event, error) {
	ev := &Event{}
	var sk sql.NullString
	var raw, kind string
	if err := rows.Scan(&ev.ID, &ev.RoomID, &kind, &ev.Type, &sk, &ev.Sender, &ev.Depth, &ev.TS, &raw, &ev.SnapshotBefore); err != nil {
		return nil, fmt.Errorf("scan outlier: %w", err)
	}
	if sk.Valid {
		ev.StateKey = &sk.String
	}
	ev.Outlier = kind == kindOutlier
	ev.Rejected = kind == kindRejected
	ev.SoftFailed = kind == kindSoftFailed
	ev.JSON = []byte(raw)
	var err error
	if ev.PDU, err = parsePDU(ev.JSON); err != nil {
		return nil, fmt.Errorf("decode event %s: %w", ev.ID, err)
	}
	ev.PDU.InternalMeta.Rejected = ev.Rejected
	ev.RedactedBy = redactedByOf(ev.JSON)
	return ev, nil
}

// redactedByOf is the redaction that redacted an outlier as stored (its
// table has no redacted_by column: applyRedaction writes the redaction
// into the JSON's unsigned), or "".
func redactedByOf(raw []byte) id.EventID {
	return id.EventID(gjson.GetBytes(raw, "unsigned.redacted_because.event_id").Str)
}

// anyEvents loads events from the timeline and beside it (rejected and
// soft-failed ones too), keyed by ID: what the checks on receipt may look
// at. Unknown IDs are missing from the map.
func (e *Engine) anyEvents(ctx context.Context, ids []id.EventID) (map[id.EventID]*Event, error) {
	out := make(map[id.EventID]*Event, len(ids))
	evs, err := e.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		out[ev.ID] = ev
	}
	var rest []id.EventID
	for _, eid := range ids {
		if out[eid] == nil {
			rest = append(rest, eid)
		}
	}
	more, err := e.outliers(ctx, rest, true)
	if err != nil {
		return nil, err
	}
	for _, ev := range more {
		out[ev.ID] = ev
	}
	return out, nil
}

// storedEvent returns the event when it is stored, in the timeline or
// beside it, or nil.
func (e *Engine) storedEvent(ctx context.Context, evID id.EventID) (*Event, error) {
	evs, err := e.anyEvents(ctx, []id.EventID{evID})
	if err != nil {
		return nil, err
	}
	return evs[evID], nil
}
