package keys

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// txnLifetime is how long a to-device transaction ID is remembered.
const txnLifetime = 24 * time.Hour

// toDeviceTarget is one message for one device.
type toDeviceTarget struct {
	user     id.UserID
	device   id.DeviceID
	content  json.RawMessage
	explicit bool // named in the request rather than reached through "*"
}

func (s *Service) putSendToDevice(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	evType, txnID := r.PathValue("eventType"), r.PathValue("txnId")
	if evType == "" || txnID == "" {
		return nil, mxhttp.InvalidParam("missing event type or transaction ID")
	}
	body, err := mxhttp.ReadBody(r, s.Limits.MaxToDeviceRequestBytes)
	if err != nil {
		return nil, err
	}
	var req struct {
		Messages map[id.UserID]map[id.DeviceID]json.RawMessage `json:"messages"`
	}
	if err := mxhttp.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if req.Messages == nil {
		return nil, mxhttp.MissingParam("missing messages")
	}
	ctx := r.Context()
	n := 0
	for _, devs := range req.Messages {
		for _, c := range devs {
			n++
			c = bytes.TrimSpace(c)
			if len(c) == 0 || c[0] != '{' {
				return nil, mxhttp.BadJSON("message content must be an object")
			}
			if len(c) > s.Limits.MaxToDeviceBytes {
				return nil, mxhttp.TooLarge("to-device message content exceeds %d bytes", s.Limits.MaxToDeviceBytes)
			}
		}
	}
	if n > s.Limits.MaxToDeviceMessages {
		return nil, mxhttp.TooLarge("at most %d messages per request", s.Limits.MaxToDeviceMessages)
	}
	targets, err := s.resolveTargets(ctx, req.Messages)
	if err != nil {
		return nil, err
	}
	// Remote messages are queued first: should the local part fail, the
	// client's retry queues EDUs with the same message IDs, which the
	// receiving servers drop.
	if err := s.sendRemoteToDevice(ctx, sess.UserID, sess.DeviceID, evType, txnID, req.Messages); err != nil {
		return nil, err
	}
	woken := map[id.UserID]bool{}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		clear(woken)
		var seen int
		// A transaction is the device's request to one path: the same ID
		// for another event type is another transaction.
		err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND type = $3 AND txn_id = $4",
			sess.UserID, sess.DeviceID, evType, txnID).Scan(&seen)
		if err != nil {
			return err
		}
		if seen > 0 {
			return nil // a retry: the messages were queued the first time
		}
		now := time.Now()
		if _, err := tx.Exec(ctx, "DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND created_ts < $3",
			sess.UserID, sess.DeviceID, now.Add(-txnLifetime).UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO to_device_txns (user_id, device_id, type, txn_id, created_ts) VALUES ($1, $2, $3, $4, $5)",
			sess.UserID, sess.DeviceID, evType, txnID, now.UnixMilli()); err != nil {
			return err
		}
		for _, t := range targets {
			if routed, err := s.routeToDevice(ctx, tx, sess.UserID, evType, t); err != nil || routed {
				if err != nil {
					return err
				}
				continue
			}
			var queued int
			if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM to_device_messages WHERE user_id = $1 AND device_id = $2", t.user, t.device).Scan(&queued); err != nil {
				return err
			}
			if queued >= s.Limits.MaxToDeviceQueue {
				if t.explicit {
					return mxhttp.LimitExceeded("too many undelivered messages for device %s of %s", t.device, t.user).With("retry_after_ms", int64(60000))
				}
				s.log.Warn("to-device queue full, message dropped", "user_id", t.user, "device_id", t.device)
				continue
			}
			if _, err := tx.Exec(ctx, "INSERT INTO to_device_messages (pos, user_id, device_id, sender, type, content) VALUES ($1, $2, $3, $4, $5, $6)",
				tx.NextPos(), t.user, t.device, sess.UserID, evType, compact(t.content)); err != nil {
				return err
			}
			s.cache.touchAfter(tx, t.user)
			woken[t.user] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for u := range woken {
		s.wake(u)
	}
	return mxhttp.Empty, nil
}

// routeToDevice hands a message to RouteToDevice, for appservices; it
// reports whether an appservice took it for good (the inbox is skipped).
func (s *Service) routeToDevice(ctx context.Context, tx *storage.Tx, sender id.UserID, evType string, t toDeviceTarget) (bool, error) {
	if s.RouteToDevice == nil {
		return false, nil
	}
	return s.RouteToDevice(ctx, tx, sender, evType, t.user, t.device, json.RawMessage(compact(t.content)))
}

// resolveTargets expands "*" for local users and drops unknown users and
// devices, and remote users (sendRemoteToDevice sends their messages).
func (s *Service) resolveTargets(ctx context.Context, msgs map[id.UserID]map[id.DeviceID]json.RawMessage) ([]toDeviceTarget, error) {
	var out []toDeviceTarget
	for user, devs := range msgs {
		if !s.isLocal(user) {
			continue
		}
		all, err := s.accounts.Devices(ctx, user)
		if err != nil {
			return nil, err
		}
		known := map[id.DeviceID]bool{}
		for _, d := range all {
			known[d.DeviceID] = true
		}
		if c, ok := devs["*"]; ok {
			for _, d := range all {
				if _, named := devs[d.DeviceID]; !named {
					out = append(out, toDeviceTarget{user: user, device: d.DeviceID, content: c})
				}
			}
		}
		for dev, c := range devs {
			if dev != "*" && known[dev] {
				out = append(out, toDeviceTarget{user: user, device: dev, content: c, explicit: true})
			}
		}
	}
	return out, nil
}

// fillToDevice acknowledges the messages the client has seen (those
// delivered up to its since token) and adds the next pending ones.
func (s *Service) fillToDevice(ctx context.Context, req *sync.Request, resp *sync.Response) error {
	if req.Device == "" {
		return nil
	}
	if req.Since.Pos > 0 {
		if err := s.ackToDevice(ctx, req.User, req.Device, req.Since.Pos); err != nil {
			return err
		}
	}
	limit := s.Limits.ToDevicePerSync
	rows, err := s.db.Query(ctx, `SELECT pos, sender, type, content FROM to_device_messages
		WHERE user_id = $1 AND device_id = $2 AND pos <= $3 ORDER BY pos LIMIT $4`, req.User, req.Device, req.To.Pos, limit+1)
	if err != nil {
		return fmt.Errorf("load to-device messages: %w", err)
	}
	defer rows.Close()
	type msg struct {
		Sender  id.UserID       `json:"sender"`
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}
	evs := &sync.Events{Events: []any{}}
	var last int64
	more := false
	for rows.Next() {
		if len(evs.Events) == limit {
			more = true
			break
		}
		var m msg
		var content string
		if err := rows.Scan(&last, &m.Sender, &m.Type, &content); err != nil {
			return err
		}
		m.Content = json.RawMessage(content)
		evs.Add(m)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	if len(evs.Events) == 0 {
		return nil
	}
	resp.ToDevice = evs
	resp.MarkNews()
	if more {
		// The token of this response is beyond messages not yet sent:
		// remember how far this delivery really went. The stream position
		// is also advanced, so the next response gets another token: were
		// two pages to share one, a retried sync could not be told from
		// the next one.
		return s.db.Write(ctx, func(tx *storage.Tx) error {
			tx.NextPos()
			if _, err := tx.Exec(ctx, "DELETE FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 AND token_pos = $3",
				req.User, req.Device, req.To.Pos); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO to_device_deliveries (user_id, device_id, token_pos, upto_pos) VALUES ($1, $2, $3, $4)",
				req.User, req.Device, req.To.Pos, last)
			return err
		})
	}
	return nil
}

// ackToDevice deletes the messages a sync with since token since
// acknowledges: all up to since, or up to where the response that gave
// that token stopped.
func (s *Service) ackToDevice(ctx context.Context, user id.UserID, device id.DeviceID, since int64) error {
	bound := since
	var upto int64
	err := s.db.QueryRow(ctx, "SELECT upto_pos FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 AND token_pos = $3",
		user, device, since).Scan(&upto)
	switch {
	case err == nil:
		bound = upto
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("load to-device delivery: %w", err)
	}
	var pos int64
	hasMsgs, hasOld := true, true
	if err := s.db.QueryRow(ctx, "SELECT pos FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3 LIMIT 1",
		user, device, bound).Scan(&pos); errors.Is(err, sql.ErrNoRows) {
		hasMsgs = false
	} else if err != nil {
		return err
	}
	if err := s.db.QueryRow(ctx, "SELECT token_pos FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 AND token_pos < $3 LIMIT 1",
		user, device, since).Scan(&pos); errors.Is(err, sql.ErrNoRows) {
		hasOld = false
	} else if err != nil {
		return err
	}
	if !hasMsgs && !hasOld {
		return nil
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		s.cache.touchAfter(tx, user)
		if _, err := tx.Exec(ctx, "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3", user, device, bound); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 AND token_pos < $3", user, device, since)
		return err
	})
}
