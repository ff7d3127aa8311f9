package rooms

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/stateres"
	"github.com/matrixos/matrixos/internal/storage"
)

// The persistent auth-chain index (the auth_edges table): each stored
// state event's auth_events, written with the event, read a room at a time into
// the room's stateres.AuthGraph when the graph starts empty (after a
// restart, or once dropped to make room for others), so that the first
// resolution in a big room reads one short row per event instead of
// loading and parsing every event of its auth chains.

// maxLazyAuthEdges bounds the rows one resolution adds to the index for
// events stored before it, to keep that write a short one.
const maxLazyAuthEdges = 2_000

// authEdgeRow is one event's row of the index.
type authEdgeRow struct {
	roomID     id.RoomID
	eventID    id.EventID
	authEvents []id.EventID
}

// insertAuthEdges adds rows to the index in tx, in multi-row inserts; a
// row already there stays (an event's auth_events never change).
func insertAuthEdges(ctx context.Context, tx *storage.Tx, rows []authEdgeRow) error {
	return insertRows(rows, 3, func(part []authEdgeRow, values string) error {
		args := make([]any, 0, len(part)*3)
		for _, row := range part {
			args = append(args, row.roomID, row.eventID, joinIDs(row.authEvents))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO auth_edges (room_id, event_id, auth_events) VALUES "+values+" ON CONFLICT DO NOTHING", args...); err != nil {
			return fmt.Errorf("insert %d auth edges: %w", len(part), err)
		}
		return nil
	})
}

// insertEventAuthEdges adds the row of ev, an event of room roomID being
// stored, to the index in tx if it is a state event: only state events
// are auth events or start a walk of the auth DAG, so the index has no
// row for a message (and a message's write pays nothing for it).
func insertEventAuthEdges(ctx context.Context, tx *storage.Tx, roomID id.RoomID, ev *Event) error {
	if ev.StateKey == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, "INSERT INTO auth_edges (room_id, event_id, auth_events) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		roomID, ev.ID, joinIDs(ev.PDU.AuthEvents)); err != nil {
		return fmt.Errorf("insert auth edges of %s: %w", ev.ID, err)
	}
	return nil
}

// stateAuthEdges returns the rows of the state events of evs.
func stateAuthEdges(evs []*Event) []authEdgeRow {
	var rows []authEdgeRow
	for _, ev := range evs {
		if ev.StateKey != nil {
			rows = append(rows, authEdgeRow{roomID: ev.RoomID, eventID: ev.ID, authEvents: ev.PDU.AuthEvents})
		}
	}
	return rows
}

func joinIDs(ids []id.EventID) string {
	var b strings.Builder
	for i, eventID := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(eventID))
	}
	return b.String()
}

// authGraph returns the room's auth graph, filled from the index first if
// it is empty.
func (e *Engine) authGraph(ctx context.Context, roomID id.RoomID) (*stateres.AuthGraph, error) {
	g := e.graphs.of(roomID)
	if g.Len() > 0 {
		return g, nil
	}
	rows, err := e.db.Query(ctx, "SELECT event_id, auth_events FROM auth_edges WHERE room_id = $1 LIMIT $2", roomID, g.Max)
	if err != nil {
		return nil, fmt.Errorf("read the auth edges of %s: %w", roomID, err)
	}
	defer rows.Close()
	var authIDs []id.EventID
	for rows.Next() {
		var eventID id.EventID
		var authEvents string
		if err := rows.Scan(&eventID, &authEvents); err != nil {
			return nil, fmt.Errorf("read the auth edges of %s: %w", roomID, err)
		}
		authIDs = authIDs[:0]
		for field := range strings.FieldsSeq(authEvents) {
			authIDs = append(authIDs, id.EventID(field))
		}
		g.Add(eventID, authIDs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the auth edges of %s: %w", roomID, err)
	}
	return g, nil
}

// saveLoadedAuthEdges queues to the index, without waiting, the auth
// edges the room's graph had to load from whole events: events stored
// before the index existed (it fills in lazily, as rooms are resolved in,
// rather than in a migration that would parse every event of every room
// at start-up) and events not stored yet. At most maxLazyAuthEdges rows
// go in one write, so that a big old room does not hold the writer (and
// every send behind it) for a long transaction; the rest are loaded again
// and saved by the resolutions after the graph next starts empty.
func (e *Engine) saveLoadedAuthEdges(roomID id.RoomID, g *stateres.AuthGraph) {
	events, authEvents := g.TakeLoaded()
	if len(events) == 0 {
		return
	}
	if len(events) > maxLazyAuthEdges {
		events, authEvents = events[:maxLazyAuthEdges], authEvents[:maxLazyAuthEdges]
	}
	rows := make([]authEdgeRow, len(events))
	for i, eventID := range events {
		rows[i] = authEdgeRow{roomID: roomID, eventID: eventID, authEvents: authEvents[i]}
	}
	ctx := context.Background()
	e.db.Enqueue(ctx, func(tx *storage.Tx) error {
		if err := insertAuthEdges(ctx, tx, rows); err != nil {
			e.log.Warn("auth edges not saved", "room_id", roomID, "err", err)
			return err
		}
		return nil
	})
}
