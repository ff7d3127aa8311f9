package pushers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/rooms"
)

// delivery is one notification on its way to one pusher.
type delivery struct {
	user    id.UserID
	pusher  *Pusher
	ev      *rooms.Event
	actions []json.RawMessage
	body    []byte // built on the first attempt
	attempt int
}

// A step is what became of a delivery at one point of its way.
type step string

// The steps a delivery reports.
const (
	stepQueued   step = "queued"   // put on the queue (also for a retry)
	stepDropped  step = "dropped"  // not queued: the queue is full or the service stopped
	stepSkipped  step = "skipped"  // not sent: its pusher was removed or replaced
	stepSent     step = "sent"     // the gateway took it
	stepRejected step = "rejected" // the gateway rejected the pushkey, and the pusher was removed
	stepFailed   step = "failed"   // this attempt failed (a retry may follow)
)

// outcome is one step of one delivery, as an observer hears of it. A
// worker may take a delivery off the queue at once, so its queued step can
// be heard after the steps that follow it.
type outcome struct {
	User    id.UserID
	EventID id.EventID
	PushKey string
	Step    step
	Err     error // for stepFailed
}

// report tells the observer, if any, of d's step. Tests observe deliveries
// to assert against a positive signal that a push was not sent.
func (s *Service) report(d *delivery, st step, err error) {
	if f := s.observe.Load(); f != nil {
		(*f)(outcome{User: d.user, EventID: d.ev.ID, PushKey: d.pusher.PushKey, Step: st, Err: err})
	}
}

// enqueue queues a delivery to each of the user's http pushers.
func (s *Service) enqueue(user id.UserID, ev *rooms.Event, actions []json.RawMessage) {
	for _, p := range s.of(user) {
		if p.Kind != "http" {
			continue
		}
		s.offer(&delivery{user: user, pusher: p, ev: ev, actions: actions})
	}
}

// offer puts d on the queue unless it is full or the service stopped.
func (s *Service) offer(d *delivery) {
	if s.ctx.Err() != nil {
		s.report(d, stepDropped, nil)
		return
	}
	select {
	case s.queue <- d:
		s.report(d, stepQueued, nil)
	default:
		s.report(d, stepDropped, nil)
		s.log.Warn("push queue full: notification dropped", "user_id", d.user, "event_id", d.ev.ID, "app_id", d.pusher.AppID)
	}
}

func (s *Service) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case d := <-s.queue:
			s.deliver(d)
		}
	}
}

// deliver sends d once; on failure it schedules a retry after a backoff
// that doubles with each attempt.
func (s *Service) deliver(d *delivery) {
	if !s.stillExists(d) {
		s.report(d, stepSkipped, nil)
		return
	}
	if d.body == nil {
		b, err := s.payload(s.ctx, d)
		if err != nil {
			s.log.Warn("build push notification", "event_id", d.ev.ID, "err", err)
			s.report(d, stepFailed, err)
			return
		}
		d.body = b
	}
	rejected, err := s.post(d)
	if err == nil {
		if !rejected {
			s.report(d, stepSent, nil)
			return
		}
		s.log.Info("push gateway rejected pushkey; removing pusher", "user_id", d.user, "app_id", d.pusher.AppID)
		p := d.pusher
		if err := s.remove(s.ctx, d.user, keyed(p.AppID, p.PushKey)); err != nil && s.ctx.Err() == nil {
			s.log.Warn("remove rejected pusher", "user_id", d.user, "err", err)
		}
		s.report(d, stepRejected, nil)
		return
	}
	s.report(d, stepFailed, err)
	if d.attempt >= s.opts.Retries {
		s.log.Warn("push failed; giving up", "user_id", d.user, "event_id", d.ev.ID, "app_id", d.pusher.AppID, "attempts", d.attempt+1, "err", err)
		return
	}
	delay := s.opts.Backoff << d.attempt
	d.attempt++
	s.log.Debug("push failed; will retry", "user_id", d.user, "event_id", d.ev.ID, "in", delay, "err", err)
	time.AfterFunc(delay, func() { s.offer(d) }) // offer drops it once stopped
}

// stillExists reports whether d's pusher has not been removed or replaced.
func (s *Service) stillExists(d *delivery) bool {
	for _, p := range s.of(d.user) {
		if p == d.pusher {
			return true
		}
	}
	return false
}

// post sends d's notification; rejected reports that the gateway rejected
// the pushkey.
func (s *Service) post(d *delivery) (rejected bool, err error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, d.pusher.URL(), bytes.NewReader(d.body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return false, fmt.Errorf("push gateway answered %d", resp.StatusCode)
	}
	var r struct {
		Rejected []string `json:"rejected"`
	}
	json.Unmarshal(b, &r)
	for _, k := range r.Rejected {
		if k == d.pusher.PushKey {
			return true, nil
		}
	}
	return false, nil
}

// gatewayDevice is one entry of a notification's devices list.
type gatewayDevice struct {
	AppID     string                     `json:"app_id"`
	PushKey   string                     `json:"pushkey"`
	PushKeyTS int64                      `json:"pushkey_ts,omitempty"`
	Data      map[string]json.RawMessage `json:"data,omitempty"`
	Tweaks    map[string]any             `json:"tweaks,omitempty"`
}

// gatewayNotification is the Push Gateway API's notification object.
type gatewayNotification struct {
	EventID           id.EventID      `json:"event_id,omitempty"`
	RoomID            id.RoomID       `json:"room_id,omitempty"`
	Type              string          `json:"type,omitempty"`
	Sender            id.UserID       `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	RoomAlias         string          `json:"room_alias,omitempty"`
	UserIsTarget      bool            `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio,omitempty"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            map[string]int  `json:"counts,omitempty"`
	Devices           []gatewayDevice `json:"devices"`
}

// payload builds the body of the POST to the gateway.
func (s *Service) payload(ctx context.Context, d *delivery) ([]byte, error) {
	var data map[string]json.RawMessage
	json.Unmarshal(d.pusher.Data, &data)
	var format string
	json.Unmarshal(data["format"], &format)
	delete(data, "url")
	dev := gatewayDevice{AppID: d.pusher.AppID, PushKey: d.pusher.PushKey, PushKeyTS: d.pusher.pushkeyTS, Data: data, Tweaks: tweaks(d.actions)}
	n := gatewayNotification{EventID: d.ev.ID, RoomID: d.ev.RoomID, Prio: "high", Devices: []gatewayDevice{dev}}
	if unread := s.push.UnreadTotal(d.user); unread > 0 {
		n.Counts = map[string]int{"unread": unread}
	}
	if format != "event_id_only" {
		n.Type = d.ev.Type
		n.Sender = d.ev.Sender
		n.Content = json.RawMessage(d.ev.PDU.Content)
		n.UserIsTarget = d.ev.Type == "m.room.member" && d.ev.StateKey != nil && *d.ev.StateKey == string(d.user)
		n.SenderDisplayName = s.stateString(ctx, d.ev.RoomID, "m.room.member", string(d.ev.Sender), "displayname")
		n.RoomName = s.stateString(ctx, d.ev.RoomID, "m.room.name", "", "name")
		n.RoomAlias = s.stateString(ctx, d.ev.RoomID, "m.room.canonical_alias", "", "alias")
	}
	return json.Marshal(map[string]any{"notification": n})
}

// stateString reads a string field of a current state event ("" if none).
func (s *Service) stateString(ctx context.Context, roomID id.RoomID, evType, stateKey, field string) string {
	ev, err := s.rooms.StateEvent(ctx, roomID, evType, stateKey)
	if err != nil || ev == nil || ev.PDU == nil {
		return ""
	}
	var c map[string]json.RawMessage
	json.Unmarshal(ev.PDU.Content, &c)
	var v string
	json.Unmarshal(c[field], &v)
	return v
}

// tweaks collects the set_tweak actions (a highlight tweak without a
// value means true).
func tweaks(actions []json.RawMessage) map[string]any {
	out := map[string]any{}
	for _, a := range actions {
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) != nil || t.SetTweak == "" {
			continue
		}
		if t.Value == nil {
			if t.SetTweak == "highlight" {
				out[t.SetTweak] = true
			}
			continue
		}
		out[t.SetTweak] = t.Value
	}
	return out
}
