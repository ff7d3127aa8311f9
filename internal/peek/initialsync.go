package peek

import (
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/sync"
)

// Bounds of initialSync's message chunk.
const (
	defaultInitialLimit = 20
	maxInitialLimit     = 100
)

type paginationChunk struct {
	Start string               `json:"start,omitempty"`
	End   string               `json:"end"`
	Chunk []*rooms.ClientEvent `json:"chunk"`
}

type roomInfo struct {
	RoomID     id.RoomID            `json:"room_id"`
	Membership string               `json:"membership,omitempty"`
	Messages   paginationChunk      `json:"messages"`
	State      []*rooms.ClientEvent `json:"state"`
	Visibility string               `json:"visibility"`
}

func (s *Service) initialSync(w http.ResponseWriter, r *http.Request, sess *accounts.Session) (any, error) {
	ctx := r.Context()
	roomID, err := mxhttp.RoomIDParam(r)
	if err != nil {
		return nil, err
	}
	limit := defaultInitialLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, mxhttp.InvalidParam("invalid limit")
		}
		limit = min(n, maxInitialLimit)
	}
	upTo, membership, err := s.access(ctx, sess.UserID, roomID, true)
	if err != nil {
		return nil, err
	}
	end := min(upTo, s.db.Visible())
	state, err := s.rooms.StateAtPos(ctx, roomID, upTo)
	if err != nil {
		return nil, err
	}
	opts := rooms.ClientOptions{User: sess.UserID, Device: sess.DeviceID}
	info := roomInfo{RoomID: roomID, Membership: membership, State: make([]*rooms.ClientEvent, 0, len(state)), Visibility: "private"}
	for _, ev := range state {
		info.State = append(info.State, ev.Client(opts))
	}
	evs, err := s.rooms.RoomEvents(ctx, roomID, 0, end, limit, true)
	if err != nil {
		return nil, err
	}
	info.Messages.End = sync.Token{Pos: end}.String()
	if len(evs) > 0 {
		info.Messages.Start = sync.Token{Pos: evs[len(evs)-1].Pos - 1}.String()
	}
	vis, err := s.rooms.Visibility(ctx, roomID, sess.UserID)
	if err != nil {
		return nil, err
	}
	info.Messages.Chunk = []*rooms.ClientEvent{}
	for i := len(evs) - 1; i >= 0; i-- { // oldest first
		if vis.CanSee(evs[i]) {
			info.Messages.Chunk = append(info.Messages.Chunk, evs[i].Client(opts))
		}
	}
	var published bool
	if err := s.db.QueryRow(ctx, "SELECT published FROM rooms WHERE room_id = $1", roomID).Scan(&published); err == nil && published {
		info.Visibility = "public"
	}
	return info, nil
}
