package pushers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/push"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Bounds of a /notifications page.
const (
	defaultNotificationsLimit = 20
	maxNotificationsLimit     = 100
)

// OnNotify queues a notification's delivery to the user's http pushers
// (push.Service records it); it suits push.Service.OnNotify.
func (s *Service) OnNotify(user id.UserID, ev *rooms.Event, actions []json.RawMessage, highlight bool) {
	s.enqueue(user, ev, actions)
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
	list, last, err := s.notifications(r.Context(), sess, before, limit, q.Get("only") == "highlight")
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"notifications": list}
	if limit > 0 && last > 0 {
		resp["next_token"] = strconv.FormatInt(last, 10)
	}
	return resp, nil
}

// notifications reads a page: the user's notifications below position
// before, newest first; last is the position of the page's last one when
// the page is full, or where the look stopped when it read as many rows
// as a request may (see push.Service.Notifications), else 0.
func (s *Service) notifications(ctx context.Context, sess *accounts.Session, before int64, limit int, onlyHighlight bool) ([]notification, int64, error) {
	out := []notification{}
	if limit == 0 {
		return out, 0, nil
	}
	recorded, scannedTo, err := s.push.Notifications(ctx, sess.UserID, before, limit, onlyHighlight)
	if err != nil {
		return nil, 0, err
	}
	legacy, err := s.legacyNotifications(ctx, sess.UserID, before, limit, onlyHighlight)
	if err != nil {
		return nil, 0, err
	}
	if scannedTo > 0 {
		// The recorded rows below scannedTo were not read: what lies
		// there belongs to the next page.
		legacy = slices.DeleteFunc(legacy, func(n push.Notification) bool { return n.Pos < scannedTo })
	}
	page := mergeNewestFirst(recorded, legacy, limit)
	ids := make([]id.EventID, len(page))
	for i, n := range page {
		ids[i] = n.EventID
	}
	evs, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, 0, err
	}
	byID := make(map[id.EventID]*rooms.Event, len(evs))
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	for _, n := range page {
		ev := byID[n.EventID]
		if ev == nil {
			continue // purged since
		}
		out = append(out, notification{
			Actions: n.Actions,
			Event:   ev.Client(rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID, OmitRoomID: true}),
			Read:    !s.push.Unread(sess.UserID, n.RoomID, n.Pos),
			RoomID:  n.RoomID,
			TS:      n.TS,
		})
	}
	var last int64
	switch {
	case len(page) == limit:
		last = page[len(page)-1].Pos
	case scannedTo > 0:
		last = scannedTo
	}
	return out, last, nil
}

// mergeNewestFirst merges two lists sorted newest first into one of at
// most limit, an event in both counting once, as the second list has it
// (the legacy rows kept the exact actions that a converted row lacks).
func mergeNewestFirst(a, b []push.Notification, limit int) []push.Notification {
	out := make([]push.Notification, 0, min(limit, len(a)+len(b)))
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0].Pos > b[0].Pos):
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0].Pos > a[0].Pos:
			out, b = append(out, b[0]), b[1:]
		default: // the same position
			out, a, b = append(out, b[0]), a[1:], b[1:]
		}
	}
	return out
}

// legacyNotifications reads push_notifications, where notifications were
// recorded one row per user before push_events (push schema version 3);
// nothing is added to it any more, and its rows go with the retention.
func (s *Service) legacyNotifications(ctx context.Context, user id.UserID, before int64, limit int, onlyHighlight bool) ([]push.Notification, error) {
	query := `SELECT pos, room_id, event_id, actions, highlight, ts FROM push_notifications WHERE user_id = $1 AND pos < $2`
	if onlyHighlight {
		query += " AND highlight = TRUE"
	}
	rows, err := s.db.Query(ctx, query+" ORDER BY pos DESC LIMIT $3", user, before, limit)
	if err != nil {
		return nil, fmt.Errorf("read notifications: %w", err)
	}
	defer rows.Close()
	var out []push.Notification
	for rows.Next() {
		var n push.Notification
		var actions string
		if err := rows.Scan(&n.Pos, &n.RoomID, &n.EventID, &actions, &n.Highlight, &n.TS); err != nil {
			return nil, fmt.Errorf("read notifications: %w", err)
		}
		if json.Unmarshal([]byte(actions), &n.Actions) != nil || n.Actions == nil {
			n.Actions = []json.RawMessage{}
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read notifications: %w", err)
	}
	return out, nil
}

// PurgeRoom drops a purged room's notifications (a rooms.Engine.OnPurge
// hook).
func (s *Service) PurgeRoom(ctx context.Context, tx *storage.Tx, roomID id.RoomID) error {
	if _, err := tx.Exec(ctx, "DELETE FROM push_notifications WHERE room_id = $1", roomID); err != nil {
		return fmt.Errorf("purge notifications: %w", err)
	}
	return nil
}
