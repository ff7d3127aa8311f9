package keys

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/storage"
)

// directToDevice is the content of an m.direct_to_device EDU.
type directToDevice struct {
	Sender    id.UserID                                     `json:"sender"`
	Type      string                                        `json:"type"`
	MessageID string                                        `json:"message_id"`
	Messages  map[id.UserID]map[id.DeviceID]json.RawMessage `json:"messages"`
}

const (
	// toDeviceEDUBytes is the size past which the messages for one
	// server are split into another EDU.
	toDeviceEDUBytes = 48 << 10
	// inboundIDLifetime is how long the message IDs of received
	// m.direct_to_device EDUs are remembered, to drop a server's retries.
	inboundIDLifetime = 7 * 24 * time.Hour
)

// sendRemoteToDevice queues the messages for remote users as
// m.direct_to_device EDUs, one series per server. Their message IDs
// derive from the client's transaction, so a retried request queues EDUs
// the receiving server recognises and drops.
func (s *Service) sendRemoteToDevice(ctx context.Context, sender id.UserID, device id.DeviceID, evType, txnID string, msgs map[id.UserID]map[id.DeviceID]json.RawMessage) error {
	servers := byServer(s, msgs)
	if len(servers) == 0 {
		return nil
	}
	if s.edus == nil {
		s.log.Debug("to-device messages for remote users dropped: federation is off", "servers", len(servers))
		return nil
	}
	for server, users := range servers {
		for i, part := range splitMessages(users) {
			edu := directToDevice{Sender: sender, Type: evType, MessageID: messageID(sender, device, evType, txnID, server, i), Messages: part}
			if err := s.edus.SendEDU(ctx, server, "m.direct_to_device", edu); err != nil {
				return fmt.Errorf("queue to-device messages for %s: %w", server, err)
			}
		}
	}
	return nil
}

// splitMessages splits the messages for one server into parts of about
// toDeviceEDUBytes.
func splitMessages(users map[id.UserID]map[id.DeviceID]json.RawMessage) []map[id.UserID]map[id.DeviceID]json.RawMessage {
	var parts []map[id.UserID]map[id.DeviceID]json.RawMessage
	cur := map[id.UserID]map[id.DeviceID]json.RawMessage{}
	size := 0
	for user, devs := range users {
		for dev, c := range devs {
			if size > 0 && size+len(c) > toDeviceEDUBytes {
				parts = append(parts, cur)
				cur, size = map[id.UserID]map[id.DeviceID]json.RawMessage{}, 0
			}
			if cur[user] == nil {
				cur[user] = map[id.DeviceID]json.RawMessage{}
			}
			cur[user][dev] = c
			size += len(c) + len(user) + len(dev)
		}
	}
	if size > 0 {
		parts = append(parts, cur)
	}
	return parts
}

// messageID names the i-th EDU a client's to-device transaction sends to
// server.
func messageID(sender id.UserID, device id.DeviceID, evType, txnID, server string, i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%s\x00%d", sender, device, evType, txnID, server, i))
	return base64.RawURLEncoding.EncodeToString(h[:18])
}

// HandleDirectToDevice handles an m.direct_to_device EDU: the messages
// for local devices ("*": all of the user's devices) are queued in their
// inboxes in one transaction with the EDU's message ID, so a server's
// retry of the same EDU is dropped and an accepted one survives a crash.
func (s *Service) HandleDirectToDevice(ctx context.Context, origin string, content json.RawMessage) error {
	var m directToDevice
	if err := json.Unmarshal(content, &m); err != nil {
		return mxhttp.BadJSON("m.direct_to_device: %v", err)
	}
	if err := remoteUserOf(m.Sender, origin); err != nil {
		return err
	}
	if m.Type == "" || m.MessageID == "" || len(m.MessageID) > 255 {
		return mxhttp.BadJSON("m.direct_to_device needs type and message_id")
	}
	local := map[id.UserID]map[id.DeviceID]json.RawMessage{}
	for user, devs := range m.Messages {
		if !s.isLocal(user) {
			continue
		}
		for dev, c := range devs {
			if len(c) == 0 || c[0] != '{' || len(c) > s.Limits.MaxToDeviceBytes {
				return mxhttp.BadJSON("m.direct_to_device: a message is not an object of at most %d bytes", s.Limits.MaxToDeviceBytes)
			}
			if local[user] == nil {
				local[user] = map[id.DeviceID]json.RawMessage{}
			}
			local[user][dev] = c
		}
	}
	targets, err := s.resolveTargets(ctx, local)
	if err != nil {
		return err
	}
	woken := map[id.UserID]bool{}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		clear(woken)
		var seen int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM to_device_inbound WHERE origin = $1 AND message_id = $2", origin, m.MessageID).Scan(&seen); err != nil {
			return err
		}
		if seen > 0 {
			return nil
		}
		now := time.Now()
		if _, err := tx.Exec(ctx, "DELETE FROM to_device_inbound WHERE origin = $1 AND received_ts < $2", origin, now.Add(-inboundIDLifetime).UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO to_device_inbound (origin, message_id, received_ts) VALUES ($1, $2, $3)", origin, m.MessageID, now.UnixMilli()); err != nil {
			return err
		}
		for _, t := range targets {
			queued, err := s.queueToDevice(ctx, tx, m.Sender, m.Type, t)
			if err != nil {
				return err
			}
			if queued {
				woken[t.user] = true
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("m.direct_to_device: %w", err)
	}
	for u := range woken {
		s.wake(u)
	}
	return nil
}

// queueToDevice adds a message to a device's inbox unless the inbox is
// full (then the message is dropped and logged). It reports whether it
// queued it.
func (s *Service) queueToDevice(ctx context.Context, tx *storage.Tx, sender id.UserID, evType string, t toDeviceTarget) (bool, error) {
	if routed, err := s.routeToDevice(ctx, tx, sender, evType, t); err != nil || routed {
		return false, err
	}
	var queued int
	if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM to_device_messages WHERE user_id = $1 AND device_id = $2", t.user, t.device).Scan(&queued); err != nil {
		return false, err
	}
	if queued >= s.Limits.MaxToDeviceQueue {
		s.log.Warn("to-device queue full, message dropped", "user_id", t.user, "device_id", t.device, "sender", sender)
		return false, nil
	}
	if _, err := tx.Exec(ctx, "INSERT INTO to_device_messages (pos, user_id, device_id, sender, type, content) VALUES ($1, $2, $3, $4, $5, $6)",
		tx.NextPos(), t.user, t.device, sender, evType, compact(t.content)); err != nil {
		return false, err
	}
	s.cache.touchAfter(tx, t.user)
	return true, nil
}

// EDUHandlers returns the handlers of the EDUs this package receives,
// by EDU type, for the federation /send endpoint.
func (s *Service) EDUHandlers() map[string]func(ctx context.Context, origin string, content json.RawMessage) error {
	return map[string]func(ctx context.Context, origin string, content json.RawMessage) error{
		"m.direct_to_device":   s.HandleDirectToDevice,
		"m.device_list_update": s.HandleDeviceListUpdate,
		"m.signing_key_update": s.HandleSigningKeyUpdate,
	}
}
