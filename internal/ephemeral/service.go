package ephemeral

import (
	"context"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/matrixos/matrixos/internal/accountdata"
	"github.com/matrixos/matrixos/internal/accounts"
	"github.com/matrixos/matrixos/internal/mxhttp"
	"github.com/matrixos/matrixos/internal/rooms"
	"github.com/matrixos/matrixos/internal/storage"
	"github.com/matrixos/matrixos/internal/sync"
)

// Service serves typing, receipts, read markers and presence.
type Service struct {
	db          *storage.DB
	log         *slog.Logger
	accounts    *accounts.Service
	rooms       *rooms.Engine
	sync        *sync.Service
	accountData *accountdata.Service

	// OnRead, when set, runs after an m.read or m.read.private receipt
	// moved forward. threadID is the receipt's thread_id ("" unthreaded,
	// "main", or a thread root's event ID); eventPos is the stream position
	// of the acknowledged event. A public receipt may lag behind a private
	// one, so the callee should keep the highest position it has seen.
	OnRead func(ctx context.Context, user id.UserID, roomID id.RoomID, threadID string, eventPos int64)

	// Hooks for appservices that receive ephemeral events (MSC2409), nil
	// when unset. OnTyping gets a room's typing users after each change.
	// OnReceipt runs inside the write that stores a public read receipt,
	// local or remote, and OnPresence inside the write that stores a
	// user's presence, with the content of its m.presence event; an error
	// fails the write.
	OnTyping   func(ctx context.Context, roomID id.RoomID, typers []id.UserID)
	OnReceipt  func(ctx context.Context, tx *storage.Tx, roomID id.RoomID, user id.UserID, threadID string, eventID id.EventID, ts int64) error
	OnPresence func(ctx context.Context, tx *storage.Tx, user id.UserID, content map[string]any) error

	typing   typingState
	presence presenceState

	// edus carries local typing, receipts and presence to other servers
	// (nil while federation is off); federatePresence says whether
	// presence goes over federation at all.
	edus             EDUSender
	federatePresence bool

	lastReceipt  lastWrite // receipts table
	lastPresence lastWrite // presence table
}

// New returns the service. It watches room events to stop the typing of
// users who leave.
func New(db *storage.DB, log *slog.Logger, acc *accounts.Service, eng *rooms.Engine, syncSvc *sync.Service, ad *accountdata.Service) *Service {
	s := &Service{
		db: db, log: log, accounts: acc, rooms: eng, sync: syncSvc, accountData: ad,
	}
	s.lastReceipt.note(db.Visible())
	s.lastPresence.note(db.Visible())
	s.typing.rooms = map[id.RoomID]*roomTyping{}
	s.presence.users = map[id.UserID]*presence{}
	s.presence.watch = map[id.UserID]bool{}
	eng.OnEvent = append(eng.OnEvent, s.onEvent)
	return s
}

// Routes registers the endpoints.
func (s *Service) Routes(mux *http.ServeMux) {
	const v3 = "/_matrix/client/v3"
	a := s.accounts.Auth
	mux.HandleFunc("PUT "+v3+"/rooms/{roomId}/typing/{userId}", a(s.putTyping))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/receipt/{receiptType}/{eventId}", a(s.postReceipt))
	mux.HandleFunc("POST "+v3+"/rooms/{roomId}/read_markers", a(s.postReadMarkers))
	mux.HandleFunc("GET "+v3+"/presence/{userId}/status", a(s.getPresenceHandler))
	mux.HandleFunc("PUT "+v3+"/presence/{userId}/status", a(s.putPresence))
}

// Sources returns the sync sources: typing, receipts and presence.
func (s *Service) Sources() []sync.Source {
	return []sync.Source{sync.SourceFunc(s.fillTyping), sync.SourceFunc(s.fillReceipts), sync.SourceFunc(s.fillPresence)}
}

func (s *Service) onEvent(ev *rooms.Event, info *rooms.RoomInfo) {
	if ev.Type == "m.room.member" && ev.StateKey != nil && info.Members[id.UserID(*ev.StateKey)] != "join" {
		s.setTyping(info.ID, id.UserID(*ev.StateKey), false, 0)
	}
}

// joinedMembers lists the room's joined users.
func (s *Service) joinedMembers(ctx context.Context, roomID id.RoomID) []id.UserID {
	var out []id.UserID
	for u, m := range s.rooms.Members(ctx, roomID) {
		if m == "join" {
			out = append(out, u)
		}
	}
	return out
}

// ephemeralAllowed reports whether the sync filter admits ephemeral events
// of this type in the room. Senders are not filtered.
func ephemeralAllowed(req *sync.Request, roomID id.RoomID, typ string) bool {
	if req.Filter == nil || req.Filter.Room == nil {
		return true
	}
	rf := req.Filter.Room
	if !rf.AllowsRoom(roomID) {
		return false
	}
	if e := rf.Ephemeral; e != nil {
		f := e.EventFilter
		f.Senders, f.NotSenders = nil, nil
		return e.AllowsRoom(roomID) && f.Allows(typ, "")
	}
	return true
}

// requireJoined fails with M_FORBIDDEN unless the user is joined to the room.
func (s *Service) requireJoined(user id.UserID, roomID id.RoomID) error {
	if s.rooms.Membership(user, roomID) != "join" {
		return mxhttp.Forbidden("you are not joined to room %s", roomID)
	}
	return nil
}
