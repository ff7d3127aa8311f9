package pushers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Bounds of a /notifications page.
const (
	defaultNotificationsLimit = 20
	maxNotificationsLimit     = 100
)

// OnNotify queues a notification's delivery to the user's http pushers
// (RecordNotification stores it); it suits push.Service.OnNotify.
func (s *Service) OnNotify(user id.UserID, ev *rooms.Event, actions []json.RawMessage, highlight bool) {
	s.enqueue(user, ev, actions)
}

// RecordNotification stores the notification for /notifications inside
// the event's write transaction (a push.NotifyTxFunc).
func (s *Service) RecordNotification(ctx context.Context, tx *storage.Tx, user id.UserID, ev *rooms.Event, actions []json.RawMessage, highlight bool) error {
	acts, err := json.Marshal(actions)
	if err != nil || actions == nil {
		acts = []byte("[]")
	}
	_, err = tx.Exec(ctx, `INSERT INTO push_notifications (user_id, pos, room_id, event_id, actions, highlight, ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, pos) DO NOTHING`,
		user, ev.Pos, ev.RoomID, ev.ID, string(acts), highlight, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("record notification: %w", err)
	}
	return nil
}

type notification struct {
	Actions    []json.RawMessage  `json:"actions"`
	Event      *rooms.ClientEvent `json:"event"`
	ProfileTag string             `json:"profile_tag,omitempty"`
	Read       bool               `json:"read"`
	RoomID     id.RoomID          `json:"room_id"`
	TS         int64              `json:"ts"`
}

func (s *Service) getNotifications(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	q := r.URL.Query()
	limit := defaultNotificationsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, mxhttp.InvalidParam("invalid limit")
		}
		limit = min(n, maxNotificationsLimit)
	}
	before := int64(1<<62 - 1)
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, mxhttp.InvalidParam("invalid from token")
		}
		before = n
	}
	query := `SELECT pos, room_id, event_id, actions, ts FROM push_notifications WHERE user_id = $1 AND pos < $2`
	if q.Get("only") == "highlight" {
		query += " AND highlight = TRUE"
	}
	query += " ORDER BY pos DESC LIMIT $3"
	list, last, err := s.notifications(r.Context(), sess, query, before, limit)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"notifications": list}
	if limit > 0 && last > 0 {
		resp["next_token"] = strconv.FormatInt(last, 10)
	}
	return resp, nil
}

// notifications runs the page query; last is the position of the last
// row read when the page is full (0 otherwise).
func (s *Service) notifications(ctx context.Context, sess *accounts.Session, query string, before int64, limit int) ([]notification, int64, error) {
	out := []notification{}
	if limit == 0 {
		return out, 0, nil
	}
	rows, err := s.db.Query(ctx, query, sess.UserID, before, limit)
	if err != nil {
		return nil, 0, err
	}
	type row struct {
		pos     int64
		roomID  id.RoomID
		eventID id.EventID
		actions string
		ts      int64
	}
	var read []row
	err = func() error {
		defer rows.Close()
		for rows.Next() {
			var rw row
			if err := rows.Scan(&rw.pos, &rw.roomID, &rw.eventID, &rw.actions, &rw.ts); err != nil {
				return err
			}
			read = append(read, rw)
		}
		return rows.Err()
	}()
	if err != nil {
		return nil, 0, err
	}
	ids := make([]id.EventID, len(read))
	for i, rw := range read {
		ids[i] = rw.eventID
	}
	evs, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, 0, err
	}
	byID := make(map[id.EventID]*rooms.Event, len(evs))
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	for _, rw := range read {
		ev := byID[rw.eventID]
		if ev == nil {
			continue // purged since
		}
		n := notification{
			Event:  ev.Client(rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID, OmitRoomID: true}),
			Read:   !s.push.Unread(sess.UserID, rw.roomID, rw.pos),
			RoomID: rw.roomID,
			TS:     rw.ts,
		}
		if json.Unmarshal([]byte(rw.actions), &n.Actions) != nil || n.Actions == nil {
			n.Actions = []json.RawMessage{}
		}
		out = append(out, n)
	}
	var last int64
	if len(read) == limit {
		last = read[len(read)-1].pos
	}
	return out, last, nil
}

// PurgeRoom drops a purged room's notifications (a rooms.Engine.OnPurge
// hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if _, err := tx.Exec(ctx, "DELETE FROM push_notifications WHERE room_id = $1", roomID); err != nil {
		return fmt.Errorf("purge notifications: %w", err)
	}
	return nil
}
