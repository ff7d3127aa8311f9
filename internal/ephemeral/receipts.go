package ephemeral

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// The receipt types clients may send.
const (
	ReceiptRead    = "m.read"
	ReceiptPrivate = "m.read.private"
	FullyRead      = "m.fully_read"
)

func (s *Service) postReceipt(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	rtype := r.PathValue("receiptType")
	if rtype != ReceiptRead && rtype != ReceiptPrivate && rtype != FullyRead {
		return nil, mxhttp.InvalidParam("unknown receipt type %q", rtype)
	}
	evID := r.PathValue("eventId")
	if !strings.HasPrefix(evID, "$") {
		return nil, mxhttp.InvalidParam("%q is not an event ID", evID)
	}
	var body map[string]json.RawMessage
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	threadID := ""
	if raw, ok := body["thread_id"]; ok {
		if json.Unmarshal(raw, &threadID) != nil || threadID == "" {
			return nil, mxhttp.InvalidParam("thread_id field must be a non-empty string")
		}
		if rtype == FullyRead {
			return nil, mxhttp.InvalidParam("thread_id cannot be used with m.fully_read")
		}
		if threadID != "main" && !strings.HasPrefix(threadID, "$") {
			return nil, mxhttp.InvalidParam("thread_id must be \"main\" or a thread root's event ID")
		}
	}
	if err := s.requireJoined(sess.UserID, roomID); err != nil {
		return nil, err
	}
	ev, err := s.roomEvent(r.Context(), roomID, id.EventID(evID))
	if err != nil {
		return nil, err
	}
	if rtype == FullyRead {
		return mxhttp.Empty, s.setFullyRead(r.Context(), sess.UserID, roomID, ev)
	}
	if err := checkThread(ev, threadID); err != nil {
		return nil, err
	}
	return mxhttp.Empty, s.putReceipt(r.Context(), sess.UserID, roomID, rtype, threadID, ev)
}

func (s *Service) postReadMarkers(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := s.requireJoined(sess.UserID, roomID); err != nil {
		return nil, err
	}
	type marker struct {
		typ string
		ev  *rooms.Event
	}
	var markers []marker
	for _, typ := range []string{FullyRead, ReceiptRead, ReceiptPrivate} {
		raw, ok := body[typ]
		if !ok || string(raw) == "null" {
			continue
		}
		var evID string
		if json.Unmarshal(raw, &evID) != nil || !strings.HasPrefix(evID, "$") {
			return nil, mxhttp.BadJSON("%s must be an event ID", typ)
		}
		ev, err := s.roomEvent(r.Context(), roomID, id.EventID(evID))
		if err != nil {
			return nil, err
		}
		markers = append(markers, marker{typ, ev})
	}
	for _, m := range markers {
		if m.typ == FullyRead {
			err = s.setFullyRead(r.Context(), sess.UserID, roomID, m.ev)
		} else {
			err = s.putReceipt(r.Context(), sess.UserID, roomID, m.typ, "", m.ev)
		}
		if err != nil {
			return nil, err
		}
	}
	return mxhttp.Empty, nil
}

// roomEvent loads an event that must belong to the room.
func (s *Service) roomEvent(ctx context.Context, roomID id.RoomID, evID id.EventID) (*rooms.Event, error) {
	ev, err := s.rooms.Event(ctx, evID)
	var me *mxhttp.Error
	if errors.As(err, &me) && me.Code == "M_NOT_FOUND" || err == nil && ev.RoomID != roomID {
		return nil, mxhttp.NotFound("event %s not found in room %s", evID, roomID)
	}
	return ev, err
}

// checkThread rejects threaded receipts for events that are plainly in
// another thread. Relations are only known one hop deep, so an event not
// directly in a thread may still belong to one (a reaction to a threaded
// message) and is accepted.
func checkThread(ev *rooms.Event, threadID string) error {
	switch {
	case threadID == "":
	case threadID == "main":
		if ev.ThreadID != "" {
			return mxhttp.InvalidParam("event %s is in thread %s, not in the main timeline", ev.ID, ev.ThreadID)
		}
	case ev.ThreadID != "" && string(ev.ThreadID) != threadID:
		return mxhttp.InvalidParam("event %s is not in thread %s", ev.ID, threadID)
	}
	return nil
}

// setFullyRead moves the user's m.fully_read marker (room account data)
// forward to ev; an older event leaves it where it is.
func (s *Service) setFullyRead(ctx context.Context, user id.UserID, roomID id.RoomID, ev *rooms.Event) error {
	old, ok, err := s.accountData.Get(ctx, user, roomID, FullyRead)
	if err != nil {
		return err
	}
	if ok {
		var c struct {
			EventID id.EventID `json:"event_id"`
		}
		json.Unmarshal(old, &c)
		if c.EventID == ev.ID {
			return nil
		}
		if prev, err := s.rooms.Event(ctx, c.EventID); err == nil && prev.Pos >= ev.Pos {
			return nil
		}
	}
	content, _ := json.Marshal(map[string]id.EventID{"event_id": ev.ID})
	return s.accountData.Set(ctx, user, roomID, FullyRead, content)
}

// putReceipt stores a local user's receipt (see storeReceipt), tells the
// room's other servers about a public one and runs OnRead.
func (s *Service) putReceipt(ctx context.Context, user id.UserID, roomID id.RoomID, rtype, threadID string, ev *rooms.Event) error {
	ts := time.Now().UnixMilli()
	moved, err := s.storeReceipt(ctx, user, roomID, rtype, threadID, ev, ts)
	if err != nil || !moved {
		return err
	}
	if rtype == ReceiptRead {
		s.sendReceipt(ctx, roomID, user, threadID, ev.ID, ts)
	}
	if s.OnRead != nil {
		s.OnRead(ctx, user, roomID, threadID, ev.Pos)
	}
	return nil
}

// storeReceipt stores a receipt made at ts unless the user's receipt of
// that type and thread already points at the same or a later event, and
// wakes whoever may see it. It reports whether the receipt moved. An event
// not known here (Pos 0, a remote receipt's) cannot be placed: its receipt
// replaces none for a known event (it may be older), and a receipt stored
// for it is placed by the event's position once the event is known, until
// then any receipt for a known event replaces it. So a receipt only moves
// forward in stream order once its event is known.
func (s *Service) storeReceipt(ctx context.Context, user id.UserID, roomID id.RoomID, rtype, threadID string, ev *rooms.Event, ts int64) (bool, error) {
	moved := false
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		moved = false
		var prev int64
		var prevID id.EventID
		err := tx.QueryRow(ctx, "SELECT event_pos, event_id FROM receipts WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4",
			roomID, user, rtype, threadID).Scan(&prev, &prevID)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("load receipt: %w", err)
		}
		if err == nil {
			if prevID == ev.ID {
				return nil
			}
			if prev == 0 {
				prev = s.knownPos(ctx, roomID, prevID)
			}
			if prev != 0 && (ev.Pos == 0 || prev >= ev.Pos) {
				return nil
			}
		}
		pos := tx.NextPos()
		if _, err := tx.Exec(ctx, `INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET
			event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, pos = excluded.pos`,
			roomID, user, rtype, threadID, ev.ID, ev.Pos, ts, pos); err != nil {
			return fmt.Errorf("store receipt: %w", err)
		}
		if rtype == ReceiptRead && s.OnReceipt != nil {
			if err := s.OnReceipt(ctx, tx, roomID, user, threadID, ev.ID, ts); err != nil {
				return err
			}
		}
		s.lastReceipt.note(pos)
		moved = true
		return nil
	})
	if err != nil || !moved {
		return false, err
	}
	if rtype == ReceiptPrivate {
		s.sync.Notifier.Wake(user)
	} else {
		s.sync.Notifier.Wake(s.joinedMembers(ctx, roomID)...)
	}
	return true, nil
}

// knownPos returns the position of a receipt's event that was not known
// here when the receipt was stored: 0 while it is still not known (or
// not in the room, or its read fails: the receipt stays replaceable).
func (s *Service) knownPos(ctx context.Context, roomID id.RoomID, evID id.EventID) int64 {
	ev, err := s.rooms.Event(ctx, evID)
	if err != nil || ev.RoomID != roomID {
		return 0
	}
	return ev.Pos
}

// receiptRow is one stored receipt.
type receiptRow struct {
	room   id.RoomID
	user   id.UserID
	rtype  string
	thread string
	event  id.EventID
	ts     int64
}

// receiptInfo is a user's receipt inside m.receipt content.
type receiptInfo struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

func (s *Service) loadReceipts(ctx context.Context, where string, args ...any) ([]receiptRow, error) {
	rs, err := s.db.Query(ctx, "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts "+where+" ORDER BY pos", args...)
	if err != nil {
		return nil, fmt.Errorf("load receipts: %w", err)
	}
	defer rs.Close()
	var out []receiptRow
	for rs.Next() {
		var r receiptRow
		if err := rs.Scan(&r.room, &r.user, &r.rtype, &r.thread, &r.event, &r.ts); err != nil {
			return nil, fmt.Errorf("load receipts: %w", err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// maxRoomsPerQuery bounds the rooms of one query's IN list.
const maxRoomsPerQuery = 500

// fillReceipts adds one m.receipt event per joined room: every receipt on
// full syncs and for rooms joined since the token, otherwise the receipts
// that changed after it. Private receipts are only shown to their owner.
func (s *Service) fillReceipts(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	var rows []receiptRow
	if req.FullState {
		// A few queries for all the rooms, not one per room: a user may be
		// in thousands.
		var rooms []any
		for _, roomID := range req.Joined {
			if ephemeralAllowed(req, roomID, "m.receipt") {
				rooms = append(rooms, roomID)
			}
		}
		for len(rooms) > 0 {
			part := rooms[:min(len(rooms), maxRoomsPerQuery)]
			rooms = rooms[len(part):]
			rs, err := s.loadReceipts(ctx, "WHERE pos <= $1 AND room_id IN ("+storage.Placeholders(2, len(part))+")",
				append([]any{req.To.Pos}, part...)...)
			if err != nil {
				return err
			}
			rows = append(rows, rs...)
		}
	} else {
		if len(req.NewlyJoined) == 0 && !s.lastReceipt.after(req.Since.Pos) {
			return nil // no receipt written since the token
		}
		rs, err := s.loadReceipts(ctx, "WHERE pos > $1 AND pos <= $2", req.Since.Pos, req.To.Pos)
		if err != nil {
			return err
		}
		for roomID := range req.NewlyJoined {
			older, err := s.loadReceipts(ctx, "WHERE room_id = $1 AND pos <= $2", roomID, req.Since.Pos)
			if err != nil {
				return err
			}
			rs = append(older, rs...)
		}
		if len(rs) > 0 {
			joined := make(map[id.RoomID]bool, len(req.Joined))
			for _, r := range req.Joined {
				joined[r] = true
			}
			for _, r := range rs {
				if joined[r.room] && ephemeralAllowed(req, r.room, "m.receipt") {
					rows = append(rows, r)
				}
			}
		}
	}
	byRoom := map[id.RoomID]map[id.EventID]map[string]map[id.UserID]receiptInfo{}
	for _, r := range rows {
		if r.rtype == ReceiptPrivate && r.user != req.User {
			continue
		}
		content := byRoom[r.room]
		if content == nil {
			content = map[id.EventID]map[string]map[id.UserID]receiptInfo{}
			byRoom[r.room] = content
		}
		types := content[r.event]
		if types == nil {
			types = map[string]map[id.UserID]receiptInfo{}
			content[r.event] = types
		}
		users := types[r.rtype]
		if users == nil {
			users = map[id.UserID]receiptInfo{}
			types[r.rtype] = users
		}
		// A user's unthreaded and threaded receipts on one event cannot
		// both be sent in this map: the unthreaded one wins, as it covers
		// the thread too (matrix-spec#1727, Complement's
		// TestThreadReceiptsInSyncMSC4102).
		if prev, clash := users[r.user]; clash && prev.ThreadID == "" && r.thread != "" {
			continue
		}
		users[r.user] = receiptInfo{TS: r.ts, ThreadID: r.thread}
	}
	for roomID, content := range byRoom {
		jr := resp.JoinedRoom(roomID)
		if jr.Ephemeral == nil {
			jr.Ephemeral = &sync.Events{Events: []any{}}
		}
		jr.Ephemeral.Add(map[string]any{"type": "m.receipt", "content": content})
		resp.MarkNews()
	}
	return nil
}

// PurgeRoom drops a purged room's receipts (a rooms.Engine.OnPurge hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if _, err := tx.Exec(ctx, "DELETE FROM receipts WHERE room_id = $1", roomID); err != nil {
		return fmt.Errorf("purge receipts: %w", err)
	}
	return nil
}
