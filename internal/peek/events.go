package peek

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/sync"
)

// Bounds of the /events long-poll.
const (
	defaultEventsTimeout = 30 * time.Second
	maxEventsTimeout     = 2 * time.Minute
	maxEventsChunk       = 100
)

type eventsResponse struct {
	Start string               `json:"start"`
	End   string               `json:"end"`
	Chunk []*rooms.ClientEvent `json:"chunk"`
}

// events returns the room's events after from, waiting up to timeout for
// one to arrive.
func (s *Service) events(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	ctx := r.Context()
	q := r.URL.Query()
	if q.Get("room_id") == "" {
		return nil, mxhttp.MissingParam("missing room_id")
	}
	roomID, err := mxhttp.RoomID(q.Get("room_id"))
	if err != nil {
		return nil, err
	}
	timeout := defaultEventsTimeout
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return nil, mxhttp.InvalidParam("invalid timeout")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxEventsTimeout)
	}
	from := s.db.Visible()
	if v := q.Get("from"); v != "" {
		tok, err := sync.ParseToken(v)
		if err != nil {
			return nil, mxhttp.InvalidParam("invalid from token")
		}
		from = tok.Pos
	}
	if _, _, err := s.access(ctx, sess.UserID, roomID, false); err != nil {
		return nil, err
	}
	start := sync.Token{Pos: from}.String()
	deadline := time.Now().Add(timeout)
	opts := rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID}
	for {
		wake := s.channel(roomID)
		upTo := s.db.Visible()
		evs, err := s.rooms.RoomEvents(ctx, roomID, from, upTo, maxEventsChunk, false)
		if err != nil {
			return nil, err
		}
		end := upTo
		if len(evs) == maxEventsChunk {
			end = evs[len(evs)-1].Pos
		}
		// Membership may change while waiting, so access is checked per
		// batch, and the visibility filter is loaded for it.
		resp := eventsResponse{Start: start, End: sync.Token{Pos: max(end, from)}.String(), Chunk: []*rooms.ClientEvent{}}
		if len(evs) > 0 {
			if _, _, err := s.access(ctx, sess.UserID, roomID, false); err != nil {
				return nil, err
			}
			vis, err := s.rooms.Visibility(ctx, roomID, sess.UserID)
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				if vis.CanSee(ev) {
					resp.Chunk = append(resp.Chunk, ev.Client(opts))
				}
			}
		}
		left := time.Until(deadline)
		if len(resp.Chunk) > 0 || left <= 0 {
			return resp, nil
		}
		from = max(end, from)
		if !wait(ctx, wake, left) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return resp, nil
		}
	}
}

// wait blocks until ch is closed (true), or the timeout or ctx ends.
func wait(ctx context.Context, ch <-chan struct{}, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
