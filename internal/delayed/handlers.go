package delayed

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
)

// Prefix is where the MSC's endpoints live.
const Prefix = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"

// DelayParam is the query parameter that asks for a delayed send.
const DelayParam = "org.matrix.msc4140.delay"

// Routes registers the listing and the actions.
func (s *Service) Routes(mux *http.ServeMux, acc *accounts.Service) {
	mux.HandleFunc("GET "+Prefix, acc.Auth(s.list))
	mux.HandleFunc("POST "+Prefix+"/{delayId}", acc.Auth(s.updateWithBody))
	mux.HandleFunc("POST "+Prefix+"/{delayId}/{action}", mxhttp.Handle(s.update))
}

// ParseDelay reads the delay parameter of a send or state request: ok is
// false when it is absent. A delay that is no whole number of milliseconds
// is M_INVALID_PARAM; one over the maximum is refused as the MSC says.
func (s *Service) ParseDelay(q url.Values) (d time.Duration, ok bool, err error) {
	v := q.Get(DelayParam)
	if v == "" {
		return 0, false, nil
	}
	ms, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil || ms < 0 {
		return 0, false, mxhttp.InvalidParam("%s must be a non-negative whole number of milliseconds", DelayParam)
	}
	if ms > s.maxDelay.Milliseconds() {
		return 0, false, &mxhttp.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN",
			Message: "The requested delay exceeds the allowed maximum.",
			Extra: map[string]any{
				"org.matrix.msc4140.errcode":   "M_MAX_DELAY_EXCEEDED",
				"org.matrix.msc4140.max_delay": s.maxDelay.Milliseconds(),
			}}
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// listedEvent is one entry of the listing.
type listedEvent struct {
	DelayID      string  `json:"delay_id"`
	RoomID       string  `json:"room_id"`
	Type         string  `json:"type"`
	StateKey     *string `json:"state_key,omitempty"`
	Delay        int64   `json:"delay"`
	RunningSince int64   `json:"running_since"`
	Content      any     `json:"content"`
}

func (s *Service) list(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	out := []listedEvent{}
	for _, e := range s.List(sess.UserID) {
		out = append(out, listedEvent{
			DelayID: e.DelayID, RoomID: string(e.RoomID), Type: e.Type, StateKey: e.StateKey,
			Delay: e.Delay.Milliseconds(), RunningSince: e.RunningSince.UnixMilli(), Content: e.Content,
		})
	}
	return map[string]any{"delayed_events": out}, nil
}

// updateWithBody is the MSC's first form: the action in the body, and
// only the event's owner may act on it.
func (s *Service) updateWithBody(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	var body struct {
		Action *string `json:"action"`
	}
	if err := mxhttp.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Action == nil {
		return nil, mxhttp.MissingParam("action is required")
	}
	delayID := r.PathValue("delayId")
	if e := s.Get(delayID); e == nil || e.User != sess.UserID {
		return nil, mxhttp.NotFound("no delayed event %s", delayID)
	}
	return s.act(r, delayID, *body.Action, mxhttp.InvalidParam("action must be cancel, restart or send"))
}

// update is the action in the path; the delay ID is the credential.
func (s *Service) update(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.act(r, r.PathValue("delayId"), r.PathValue("action"), mxhttp.Unrecognized("unknown delayed event action"))
}

// act runs the action on the event; unknown is the error for an action
// that is none of the three.
func (s *Service) act(r *http.Request, delayID, action string, unknown error) (any, error) {
	var err error
	switch action {
	case "cancel":
		err = s.Cancel(r.Context(), delayID)
	case "restart":
		err = s.Restart(r.Context(), delayID)
	case "send":
		_, err = s.Send(r.Context(), delayID)
	default:
		return nil, unknown
	}
	if errors.Is(err, ErrNotFound) {
		return nil, mxhttp.NotFound("no delayed event %s", delayID)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}
