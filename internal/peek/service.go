package peek

import (
	"context"
	"net/http"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
)

// Service serves initialSync and the peeking /events stream.
type Service struct {
	db    *storage.DB
	acc   *accounts.Service
	rooms *rooms.Engine

	mu      sync.Mutex
	waiters map[id.RoomID]chan struct{}
}

// New returns the service; add its OnEvent to the engine's hooks.
func New(db *storage.DB, acc *accounts.Service, eng *rooms.Engine) *Service {
	return &Service{db: db, acc: acc, rooms: eng, waiters: map[id.RoomID]chan struct{}{}}
}

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	mux.HandleFunc("GET "+v3+"/rooms/{roomId}/initialSync", s.acc.Auth(s.initialSync))
	mux.HandleFunc("GET "+v3+"/events", s.acc.Auth(s.events))
}

// OnEvent wakes the room's /events long-polls; it suits
// rooms.Engine.OnEvent.
func (s *Service) OnEvent(ev *rooms.Event, _ *rooms.RoomInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.waiters[ev.RoomID]; ok {
		close(ch)
		delete(s.waiters, ev.RoomID)
	}
}

// channel returns a channel closed at the room's next event. Take it
// before looking for events, so none committed in between is missed.
func (s *Service) channel(roomID id.RoomID) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[roomID]
	if !ok {
		ch = make(chan struct{})
		s.waiters[roomID] = ch
	}
	return ch
}

// access says how the user may see the room: upTo is the last stream
// position they may see (math.MaxInt64 for "everything, live"), and
// membership their membership ("" if none).
func (s *Service) access(ctx context.Context, user id.UserID, roomID id.RoomID, allowLeft bool) (upTo int64, membership string, err error) {
	upTo, membership, ok, err := s.rooms.ReadableUpTo(ctx, user, roomID, allowLeft)
	if err != nil {
		return 0, "", err
	}
	if !ok {
		return 0, "", mxhttp.Forbidden("you are not allowed to see this room")
	}
	return upTo, membership, nil
}
