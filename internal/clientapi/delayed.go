package clientapi

import (
	"encoding/json"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/delayed"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// delayParam reads MSC4140's delay parameter of a send or state request:
// ok is false when the request asks for no delay.
func (s *Service) delayParam(r *http.Request) (d time.Duration, ok bool, err error) {
	if !r.URL.Query().Has(delayed.DelayParam) {
		return 0, false, nil
	}
	if s.Delayed == nil {
		return 0, false, mxhttp.InvalidParam("delayed events are not enabled on this server")
	}
	return s.Delayed.ParseDelay(r.URL.Query())
}

// delayedEvent describes an event to send after delay; stateKey is nil
// for a message event.
func delayedEvent(roomID id.RoomID, evType string, stateKey *string, content json.RawMessage, delay time.Duration, txnKey string) delayed.Event {
	return delayed.Event{RoomID: roomID, Type: evType, StateKey: stateKey, Content: content, Delay: delay, TxnKey: txnKey}
}

// scheduleDelayed schedules e for the requesting user and device and
// answers its delay_id. Only a member of the room may schedule events for
// it; whether the event itself is allowed is decided when it is sent.
func (s *Service) scheduleDelayed(r *http.Request, sess *accounts.Session, e delayed.Event) (any, error) {
	if s.rooms.Membership(sess.UserID, e.RoomID) != "join" {
		return nil, mxhttp.Forbidden("you are not in room %s", e.RoomID)
	}
	e.User, e.Device = sess.UserID, sess.DeviceID
	delayID, err := s.Delayed.Schedule(r.Context(), e)
	if err != nil {
		return nil, err
	}
	return map[string]any{"delay_id": delayID}, nil
}
